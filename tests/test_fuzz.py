"""The loaders under a bounded fuzz campaign (tests/fuzzing.py): about a minute in all. Every
mutated input is accepted or refused with one QetoolError; any other exception fails the test
with the input that caused it. bench/fuzz.py runs the same for 10,000+ cases."""

import shutil

import pytest
from fuzzing import TARGETS, make_seeds, run_case
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


@pytest.fixture(scope="module")
def seeds():
    s = make_seeds()
    yield s
    shutil.rmtree(s.work.parent, ignore_errors=True)


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_fuzz(seeds, target):
    @given(st.data())
    @settings(max_examples=800, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    def case(data):
        run_case(target, data, seeds)

    case()
