"""The robust suite's worst case against torchattacks' AutoAttack (standard) called directly, side by
side in one run, on the same runs, test samples and ε.

Workbench: the whole path of ``python -m engine evaluate --suite robust --force`` (``engine.suites.
suite_job``: loading the runs and the data, clean decisions, APGD-CE, PGD-50 on the objective's
adaptive objective and margin PGD-50 with 2 restarts each on every clean-correct sample, then APGD-T,
FAB-T and Square-5000 on the samples still standing, every outcome written to the store).
torchattacks: ``torchattacks.AutoAttack(version="standard")`` on the logits, in the same batches,
accuracy by the objective's decision rule. The contenders alternate; medians are compared.
Target (issue 9): ≤ 1.3×. The suite's worst case must also be no higher than AutoAttack's accuracy.

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
from engine.config import ObjectiveSpec, TrainConfig
from engine.robustness import attack_batch, load_for_evaluation
from engine.suites import suite_job
from engine.train import train_job


def autoattack_accuracy(model, objective, x, y, eps: float, batch: int) -> float:
    """torchattacks' AutoAttack, standard version, as its README calls it."""
    net = LogitsModel(model, objective).eval()
    atk = torchattacks.AutoAttack(net, norm="Linf", eps=eps, version="standard", n_classes=objective.num_classes,
                                  seed=0)
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
    times = {"workbench": [], "torchattacks": []}
    worst, direct = {}, {}
    for _ in range(args.repeats):
        for name in times:
            sync(device)
            t0 = time.perf_counter()
            if name == "workbench":
                out = suite_job(store, run_ids, "robust", args.samples, 0, True, device, eps=eps)
                worst = {r: dict(zip(out["worst_case"][r]["eps"], out["worst_case"][r]["accuracy"])) for r in run_ids}
            else:
                direct = {r: {e: autoattack_accuracy(*loaded[r][:2], x, y, e, batch) for e in eps} for r in run_ids}
            sync(device)
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    rows = [{"run_id": r, "objective": loaded[r][2]["objective"], "eps": e, "worst_case": worst[r][e],
             "autoattack": direct[r][e], "worst_case_not_above_autoattack": worst[r][e] <= direct[r][e]}
            for r in run_ids for e in eps]
    print(json.dumps({"rows": rows, "seconds": med, "ratio": med["workbench"] / med["torchattacks"], "target": 1.3,
                      "samples": len(y), "batch": batch, "device": str(device),
                      "torch_threads": torch.get_num_threads()}, indent=2))
    print(f"\nrobust suite on {len(run_ids)} runs × {len(eps)} ε × {len(y)} samples: workbench {med['workbench']:.1f} s, "
          f"torchattacks.AutoAttack(standard) directly {med['torchattacks']:.1f} s, ratio "
          f"{med['workbench'] / med['torchattacks']:.3f} (target ≤ 1.3)")
    for row in rows:
        print(f"  {row['objective']:>6} {row['run_id'][:6]} ε = {row['eps']:g}: worst case {row['worst_case']:.4f}, "
              f"AutoAttack {row['autoattack']:.4f}")


if __name__ == "__main__":
    main()
