"""`qetool search` with a progress bar: iterations, best QE-score and rate."""

from __future__ import annotations

from tqdm import tqdm

from qetool.search.evolve import Candidate, Evolution, SearchConfig, SearchResult

_EVERY = 500


def run_with_progress(cfg: SearchConfig) -> SearchResult:
    """search(cfg) drawing a bar on stderr; Ctrl-C stops it with the best so far."""
    evolution = Evolution(cfg)
    with tqdm(total=cfg.iterations, unit="it", dynamic_ncols=True, smoothing=0.1,
              desc="search") as bar:
        def progress(done: int, best: Candidate) -> None:
            bar.update(done - bar.n)
            bar.set_postfix(best=f"{best.qe_score:.3f}", refresh=False)

        result = evolution.run(progress, _EVERY)
        bar.update(result.iterations_done - bar.n)
    return result
