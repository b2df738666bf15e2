"""Listing the store at 100, 1,000 and 10,000 runs, side by side in one run: ``list_runs`` (what the
CLI's ``runs`` and every run picker read) and ``runs_table`` (the Runs page's data, with each run's
worst case composed from its cached outcomes). Target (issue 10): linear growth, ≤ 1 s at 10,000.

Runs are made through the store's API (``save_run``, ``put_result``) with records shaped like real
ones: settings, final metrics, a 100-epoch history (kept out of listings), a small checkpoint, and
per run the clean decisions and one attack's outcome and accuracy at ε 0.1 on 450 test samples, as a
sweep stores them, after which the sweep derives what listings show of them (each run's worst case and
attacks, ``engine.report.derive_listing_values``). Each listing is timed on a freshly opened store (no warm
caches of its own), median of --repeats. ``--stale`` skips the deriving, as in a store whose results
were written by an older version: its first Runs page view then composes every run's worst case once.

    python benchmarks/bench_store.py [--sizes 100,1000,10000] [--repeats 3] [--stale]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cache import RunStore  # noqa: E402
from engine.report import cached_attacks, runs_table  # noqa: E402
from cache.points import result_key  # noqa: E402
from engine.robustness import accuracy_settings, bits  # noqa: E402
from engine.report import derive_listing_values  # noqa: E402

SAMPLES = 450


def fake_run(i: int, rng: np.random.Generator) -> tuple[dict, dict, dict]:
    run_id = f"{i:016x}"
    objective = ("ce", "gccs", "mmc")[i % 3]
    history = [{"epoch": e, "loss": float(rng.random()), "test_acc": float(rng.random()), "train_acc": 0.9,
                "time": float(e), "diagnostics": {"mean_norm_z": 1.0, "mean_dist_own_vertex": 2.0}}
               for e in range(1, 101)]
    record = {"run_id": run_id, "created": float(i), "objective": objective, "dataset": "digits", "model": "cnn",
              "settings": {"seed": i % 5, "epochs": 100, "params": {"mu_t": 70.0} if objective == "gccs" else {},
                           "lr": 0.01, "batch_size": 200, "adv_attack": "none", "init_from": ""},
              "num_classes": 10, "class_names": [str(c) for c in range(10)], "latent_dim": 10,
              "geometry": None, "device": "cpu", "torch": "2", "history": history,
              "final": {"test_acc": 0.95, "test_f1": 0.95, "r_ab": 2.0, "r_ab_ci": 0.1, "train_acc": 0.99,
                        "kurtosis": [0.1] * 10, "diagnostics": {"mean_norm_z": 1.0}},
              "timing": {"train_seconds": 10.0, "job_seconds": 11.0, "epochs": 100, "samples_per_s": 1e4},
              "warnings": []}
    checkpoint = {"model": {"w": rng.standard_normal((64, 10)).astype(np.float32)}, "objective": {}}
    latents = {"z": rng.standard_normal((50, 10)).astype(np.float32), "y": np.arange(50) % 10}
    return record, checkpoint, latents


def fill(store: RunStore, start: int, stop: int, rng: np.random.Generator, derive: bool = True) -> None:
    for i in range(start, stop):
        record, checkpoint, latents = fake_run(i, rng)
        store.save_run(record, checkpoint, latents)
        run_id = record["run_id"]
        correct = torch.from_numpy(rng.random(SAMPLES) < 0.95)
        survived = correct & torch.from_numpy(rng.random(SAMPLES) < 0.4)
        store.put_result(result_key(run_id, "clean", {"samples": SAMPLES}),
                         {"kind": "clean", "run_id": run_id, "samples": SAMPLES, "correct": bits(correct),
                          "accuracy": float(correct.float().mean()), "created": 0.0})
        settings = accuracy_settings("pgd", {"steps": 10}, 0.1, SAMPLES, 0)
        store.put_result(result_key(run_id, "outcome", settings),
                         {"kind": "outcome", "run_id": run_id, **settings, "attacked": bits(correct),
                          "survived": bits(survived), "seconds": 0.0, "created": 0.0})
        store.put_result(result_key(run_id, "accuracy", settings),
                         {"kind": "accuracy", "run_id": run_id, **settings, "accuracy": float(survived.float().mean()),
                          "seconds": 0.0, "created": 0.0})
        if derive:
            derive_listing_values(store, [run_id])  # as a sweep does once its results are written


def runs_page_data(store: RunStore) -> list[dict]:
    """What pages/runs.py computes: the listing, the attacks on offer, the table."""
    records = store.list_runs()
    cached_attacks(store, [r["run_id"] for r in records])
    return runs_table(store, records=records)


def timed(path: Path, what, repeats: int) -> tuple[float, int]:
    times, size = [], 0
    for _ in range(repeats):
        store = RunStore(path)
        start = time.perf_counter()
        size = len(what(store))
        times.append(time.perf_counter() - start)
        store.close()
    return statistics.median(times), size


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="100,1000,10000")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--stale", action="store_true", help="do not derive the listing values when writing")
    args = p.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    path = Path(tempfile.mkdtemp(prefix="bench-store-")) / "store"
    rng, made, rows = np.random.default_rng(0), 0, []
    for n in sizes:
        start = time.perf_counter()
        store = RunStore(path)
        fill(store, made, n, rng, derive=not args.stale)
        store.close()
        filled, made = time.perf_counter() - start, n
        listing, count = timed(path, lambda s: s.list_runs(), args.repeats)
        cold, rows_n = timed(path, runs_page_data, 1)  # derives each run's worst case and keeps it
        table, rows_n = timed(path, runs_page_data, args.repeats)
        assert count == rows_n == n
        rows.append({"runs": n, "list_runs_s": round(listing, 4), "runs_page_first_s": round(cold, 4), "runs_page_s": round(table, 4),
                     "fill_s": round(filled, 1)})
        print(json.dumps(rows[-1]), flush=True)
    base = rows[0]
    for row in rows[1:]:
        scale = row["runs"] / base["runs"]
        print(f"{row['runs']:>6} runs: ×{scale:g} runs → list_runs ×{row['list_runs_s'] / base['list_runs_s']:.1f}, "
              f"Runs page data ×{row['runs_page_s'] / base['runs_page_s']:.1f} (linear: ×{scale:g})")


if __name__ == "__main__":
    main()
