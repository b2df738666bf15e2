"""The robust suite's worst case against AutoAttack called directly, side by side in one run, on the
same runs, test samples and ε.

Workbench: the whole path of ``python -m engine evaluate --suite robust --force`` (``engine.suites.
suite_job``: loading the runs and the data, clean decisions, AutoAttack, PGD-50 on the objective's
adaptive objective, margin PGD-50 and APGD-CE on every clean-correct sample, then APGD-DLR and APGD-T
on the samples still standing, every outcome written to the store).
Contenders, each on the logits in the same batches, accuracy by the objective's decision rule:
``torchattacks.AutoAttack(version="standard")`` as its README calls it (APGD and FAB at torchattacks'
default 10 iterations), and the same four torchattacks members at the paper's 100 iterations, the
AutoAttack the suite contains (``engine.attacks.autoattack.AutoAttack``). The contenders alternate;
medians are compared. Target (issue 9): ≤ 1.3×. The worst case must be no higher than either.

    python benchmarks/bench_robust.py [--runs RUN_ID ...] [--eps 0.1] [--samples N] [--repeats 1] [--threads 2]

Without --runs, a CE and a GCCS run are trained here (20 epochs on digits) in a temporary store.
"""
from __future__ import annotations

import json
import statistics
import tempfile
import time

import torch
import torchattacks

from common import parser, setup, sync
from engine.attacks import LogitsModel
from engine.attacks.autoattack import AutoAttack
from engine.config import ObjectiveSpec, TrainConfig
from engine.robustness import attack_batch, load_for_evaluation
from engine.suites import suite_job
from engine.train import train_job


def autoattack_accuracy(model, objective, x, y, eps: float, batch: int, steps: int | None) -> float:
    """AutoAttack, standard version: torchattacks' own (steps None: its fixed 10 iterations) or the
    same members at ``steps`` iterations."""
    net = LogitsModel(model, objective).eval()
    if steps is None:
        atk = torchattacks.AutoAttack(net, norm="Linf", eps=eps, version="standard", n_classes=objective.num_classes,
                                      seed=0)
    else:
        atk = AutoAttack(net, eps=eps, steps=steps, queries=5000, n_classes=objective.num_classes, seed=0)
    correct = 0
    for i in range(0, len(y), batch):
        xb, yb = x[i:i + batch], y[i:i + batch]
        xa = atk(xb, yb)
        with torch.no_grad():
            correct += int((objective.test_predictions(model, xa, model(xa)) == yb).sum())
    return correct / len(y)


def main() -> None:
    p = parser(__doc__, repeats=1)
    p.add_argument("--runs", nargs="+", help="stored run ids (default: train CE and GCCS here)")
    p.add_argument("--store", help="the store of --runs (default: $SIMPLEX_STORE or the default store)")
    p.add_argument("--eps", default="0.1", help="comma-separated ℓ∞ budgets (default 0.1)")
    p.add_argument("--samples", type=int, help="first N test samples (default: the whole test split)")
    args = p.parse_args()
    device = setup(args)
    from cache import RunStore

    eps = [float(e) for e in args.eps.split(",") if e]
    if args.runs:
        store, run_ids = RunStore(args.store), args.runs
    else:
        store = RunStore(tempfile.mkdtemp(prefix="bench-robust-"))
        config = TrainConfig(dataset=args.dataset, model=args.model, epochs=20, device=device.type,
                             objectives=(ObjectiveSpec("ce"), ObjectiveSpec("gccs")))
        run_ids = [r["run_id"] for r in train_job(config, store)]
    loaded, x, y = load_for_evaluation(store, run_ids, args.samples, device)
    batch = attack_batch(device, None)
    times = {"workbench": [], "torchattacks": [], "autoattack-100": []}
    worst, direct = {}, {"torchattacks": {}, "autoattack-100": {}}
    for _ in range(args.repeats):
        for name in times:
            sync(device)
            t0 = time.perf_counter()
            if name == "workbench":
                out = suite_job(store, run_ids, "robust", args.samples, 0, True, device, eps=eps)
                worst = {r: dict(zip(out["worst_case"][r]["eps"], out["worst_case"][r]["accuracy"])) for r in run_ids}
            else:
                steps = None if name == "torchattacks" else 100
                direct[name] = {r: {e: autoattack_accuracy(*loaded[r][:2], x, y, e, batch, steps) for e in eps}
                                for r in run_ids}
            sync(device)
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    rows = [{"run_id": r, "objective": loaded[r][2]["objective"], "eps": e, "worst_case": worst[r][e],
             "torchattacks_autoattack": direct["torchattacks"][r][e], "autoattack_100": direct["autoattack-100"][r][e]}
            for r in run_ids for e in eps]
    ratios = {k: med["workbench"] / med[k] for k in ("torchattacks", "autoattack-100")}
    print(json.dumps({"rows": rows, "seconds": med, "ratios": ratios, "target": 1.3, "samples": len(y),
                      "batch": batch, "device": str(device), "torch_threads": torch.get_num_threads()}, indent=2))
    print(f"\nrobust suite on {len(run_ids)} runs × {len(eps)} ε × {len(y)} samples: workbench {med['workbench']:.1f} s; "
          f"torchattacks.AutoAttack(standard) directly {med['torchattacks']:.1f} s (ratio {ratios['torchattacks']:.2f}); "
          f"the same members at 100 iterations directly {med['autoattack-100']:.1f} s (ratio "
          f"{ratios['autoattack-100']:.2f}; target ≤ 1.3)")
    for row in rows:
        print(f"  {row['objective']:>6} {row['run_id'][:6]} ε = {row['eps']:g}: worst case {row['worst_case']:.4f}, "
              f"torchattacks AutoAttack {row['torchattacks_autoattack']:.4f}, at 100 iterations {row['autoattack_100']:.4f}")


if __name__ == "__main__":
    main()
