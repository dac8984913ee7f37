"""`qetool search` with a progress bar: iterations, best QE-score and rate; the best QE-score is
also kept as the search's history."""

from __future__ import annotations

from tqdm import tqdm

from qetool.search.evolve import Candidate, Evolution, SearchConfig, SearchResult

_EVERY = 500


def run_with_progress(cfg: SearchConfig) -> tuple[SearchResult, list[tuple[int, float]]]:
    """search(cfg) drawing a bar on stderr; Ctrl-C stops it with the best so far. Also returns
    (iterations done, best QE-score) at the start, every _EVERY iterations and at the end."""
    evolution = Evolution(cfg)
    points = [(0, evolution.first.qe_score)]
    with tqdm(total=cfg.iterations, unit="it", dynamic_ncols=True, smoothing=0.1,
              desc="search") as bar:
        def progress(done: int, best: Candidate) -> None:
            bar.update(done - bar.n)
            bar.set_postfix(best=f"{best.qe_score:.3f}", refresh=False)
            points.append((done, best.qe_score))

        result = evolution.run(progress, _EVERY)
        bar.update(result.iterations_done - bar.n)
    if result.iterations_done > points[-1][0]:
        points.append((result.iterations_done, result.best.qe_score))
    return result, points
