"""The workbench's PGD sweep against calling torchattacks.PGD directly, side by side in one run.

Both attack the same trained model (a CE run trained here on digits, unless --run names a stored
one) on the same test samples over the same ε grid, in batches of 100, with the same PGD settings;
the contenders alternate and the medians are compared. Target (issue 4): ≤ 1.10×.

    python benchmarks/bench_attacks.py [--run RUN_ID] [--steps 10] [--repeats 3] [--threads 1]
"""
from __future__ import annotations

import json
import statistics
import time

import torch
import torchattacks

from common import parser, setup, sync
from engine.attacks import LogitsModel
from engine.config import ObjectiveSpec, TrainConfig
from engine.data import load_dataset
from engine.evaluate import robust_accuracy
from engine.train import load_run, train_job

EPS = (0.0, 0.025, 0.05, 0.075, 0.1)


def direct_sweep(model, objective, x, y, steps: int, alpha: float) -> list[float]:
    """The plainest use of the library: torchattacks.PGD on the logits, batches of 100."""
    net = LogitsModel(model, objective).eval()
    out = []
    for eps in EPS:
        correct = 0
        atk = torchattacks.PGD(net, eps=eps, alpha=alpha, steps=steps) if eps > 0 else None
        for i in range(0, len(x), 100):
            xb, yb = x[i:i + 100], y[i:i + 100]
            xa = atk(xb, yb) if atk is not None else xb
            with torch.no_grad():
                correct += int((net(xa).argmax(1) == yb).sum())
        out.append(correct / len(x))
    return out


def main() -> None:
    p = parser(__doc__, repeats=3)
    p.add_argument("--run", help="a stored run id (default: train a quick CE run here, not stored)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--alpha", type=float, default=0.01)
    args = p.parse_args()
    device = setup(args)
    if args.run:
        from cache import RunStore

        model, objective, record = load_run(RunStore(), args.run, device)
        dataset = record["dataset"]
    else:
        config = TrainConfig(dataset=args.dataset, model=args.model, epochs=20, device=device.type,
                             objectives=(ObjectiveSpec("ce"),))
        from cache import RunStore
        import tempfile

        store = RunStore(tempfile.mkdtemp(prefix="bench-attacks-"))
        (record,) = train_job(config, store)
        model, objective, _ = load_run(store, record["run_id"], device)
        dataset = args.dataset
    data = load_dataset(dataset).to(device)
    x, y = data.x_test, data.y_test
    params = {"steps": args.steps, "alpha": args.alpha}
    times = {"workbench": [], "torchattacks": []}
    for _ in range(args.repeats):
        for name in times:
            torch.manual_seed(0)
            sync(device)
            t0 = time.perf_counter()
            if name == "workbench":
                accuracy = [robust_accuracy(model, objective, x, y, "pgd", e, params) for e in EPS]
            else:
                direct = direct_sweep(model, objective, x, y, args.steps, args.alpha)
            sync(device)
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(json.dumps({"eps": EPS, "workbench_accuracy": accuracy, "torchattacks_accuracy": direct,
                      "seconds": med, "ratio": med["workbench"] / med["torchattacks"], "target": 1.10,
                      "samples": len(y), "device": str(device), "torch_threads": torch.get_num_threads()}, indent=2))
    print(f"\nPGD-{args.steps} sweep over {len(EPS)} ε on {len(y)} samples: workbench {med['workbench']:.2f} s, "
          f"torchattacks.PGD directly {med['torchattacks']:.2f} s, ratio {med['workbench'] / med['torchattacks']:.3f} "
          f"(target ≤ 1.10)")


if __name__ == "__main__":
    main()
