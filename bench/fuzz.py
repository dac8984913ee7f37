"""The fuzz campaign of tests/test_fuzz.py at length: every loader fed mutated valid inputs
(tests/fuzzing.py), 10,000+ cases by default. Prints per loader the cases run, accepted and
refused with one QetoolError, and every other exception (a bug) with the input's draws.

    python bench/fuzz.py [--cases 12000] [--seed 0]
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from fuzzing import TARGETS, make_seeds, run_case  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from qetool.table import render  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=12_000, help="cases in all, shared by the loaders")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    seeds = make_seeds()
    per = -(-args.cases // len(TARGETS))
    rows, failures, start = [], [], time.perf_counter()
    try:
        for target in TARGETS:
            tally = {"accepted": 0, "refused": 0}

            @given(st.data())
            @settings(max_examples=per, deadline=None, database=None, derandomize=False,
                      suppress_health_check=list(HealthCheck))
            def case(data):
                tally["accepted" if run_case(target, data, seeds) else "refused"] += 1

            random.seed(args.seed)
            try:
                case()
            except Exception as e:  # a bug found: report it and go on with the next loader
                failures.append((target, "".join(traceback.format_exception_only(type(e), e)).strip()))
            n = tally["accepted"] + tally["refused"]
            rows.append((target, f"{n:,}", f"{tally['accepted']:,}", f"{tally['refused']:,}"))
            print(f"{target}: {n:,} cases", flush=True)
    finally:
        shutil.rmtree(seeds.work.parent, ignore_errors=True)
    total = sum(int(r[1].replace(",", "")) for r in rows)
    print()
    print(render(("loader", "cases", "accepted", "refused (QetoolError)"), rows,
                 [("total", f"{total:,}", "", "")]))
    print(f"\n{total:,} cases in {time.perf_counter() - start:.0f} s; "
          f"{len(failures)} loader(s) raised something other than QetoolError")
    for target, what in failures:
        print(f"\n{target}:\n{what}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
