"""A 200-run study, listed: what the Studies and Runs pages read to draw it, each timed on a freshly
opened store (median of --repeats), and both pages rendered whole through Streamlit's AppTest.
Target (issue 12): under a second each.

The study is real: CE and GCCS on digits, GCCS over nine values of λ, both at two batch sizes, ten
seeds, one epoch each (20 cells × 10 seeds = 200 runs), trained once by the local executor (timed
too). ``--store`` keeps the store between invocations.

    python benchmarks/bench_study.py [--repeats 3] [--store DIR] [--threads 2]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from cache import RunStore  # noqa: E402
from engine.report import runs_table  # noqa: E402
from engine.studies import claim_rows, result_rows, stored_values, study_from_dict, study_results  # noqa: E402
from engine.study_run import run_study  # noqa: E402

STUDY = {"name": "bench-200", "title": "200 runs: CE and GCCS over λ and batch size", "objectives": ["ce", "gccs"],
         "seeds": list(range(10)), "settings": {"epochs": 1},
         "grid": {"gccs.lam": [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5], "batch_size": [100, 200]},
         "evaluate": [],
         "claims": [{"text": "λ 0.2 beats λ 0", "metric": "clean_accuracy", "a": {"gccs.lam": 0.2, "batch_size": 200},
                     "b": {"gccs.lam": 0.0, "batch_size": 200}, "expect": "higher"}]}


def studies_page_data(path: Path) -> int:
    """What the Studies page computes to show a stored study: the listing, the values, the tables."""
    store = RunStore(path)
    row = store.list_studies()[0]
    study = study_from_dict(row["definition"])
    results = study_results(study, stored_values(store, study))
    rows = result_rows(results) + claim_rows(results)
    store.close()
    return len(rows)


def runs_page_data(path: Path) -> int:
    store = RunStore(path)
    rows = runs_table(store, None, None, store.list_runs())
    store.close()
    return len(rows)


def page_seconds(page: str, path: Path) -> float:
    """One whole render of a page (a fresh AppTest session: its store opened anew)."""
    from streamlit.testing.v1 import AppTest

    os.environ["SIMPLEX_STORE"] = str(path)
    at = AppTest.from_file(str(ROOT / "pages" / page), default_timeout=60)
    started = time.perf_counter()
    at.run()
    seconds = time.perf_counter() - started
    assert not at.exception, at.exception
    return seconds


def median_seconds(fn, repeats: int) -> tuple[float, object]:
    times, value = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), value


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--store", help="store folder (default: a temporary one)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    path = Path(args.store) if args.store else Path(tempfile.mkdtemp(prefix="bench-study-"))
    store = RunStore(path)
    study = study_from_dict(STUDY)
    started = time.perf_counter()
    results = run_study(study, store)
    trained = time.perf_counter() - started
    store.close()
    print(f"study {study.name}: {results['runs']} runs, {len(results['cells'])} cells, computed in {trained:.1f} s "
          f"(local executor, {args.threads} threads; 0 s when the store had them)")
    sys.path.insert(0, str(ROOT))
    for label, fn in (("Studies page data (list, values, cells, tables)", lambda: studies_page_data(path)),
                      ("Runs page data (runs_table)", lambda: runs_page_data(path)),
                      ("Studies page, whole render (AppTest)", lambda: page_seconds("studies.py", path)),
                      ("Runs page, whole render (AppTest)", lambda: page_seconds("runs.py", path))):
        seconds, _ = median_seconds(fn, args.repeats)
        print(f"{label}: {seconds:.3f} s (median of {args.repeats})")


if __name__ == "__main__":
    main()
