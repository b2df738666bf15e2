"""How a workbench epoch grows with the training set: the first 1k, 4k, 16k and 60k images of a
dataset, CE alone, measured side by side in one run. Reports the seconds of training steps per
epoch (the member's own step timer) and the whole epoch with its test pass, and the growth exponent
a of time ∝ Nᵃ fitted on a log-log scale (≈ 1 expected: fixed per-step work, no per-sample Python).

    python benchmarks/bench_scaling.py [--dataset fashion-mnist] [--sizes 1000,4000,16000,60000] [--threads 2]
"""
from __future__ import annotations

import dataclasses
import json
import math
import statistics

from common import parser, setup
from engine import train as train_module
from engine.config import ObjectiveSpec, TrainConfig
from engine.data import load_dataset


def fit_exponent(sizes: list[int], seconds: list[float]) -> float:
    """The least-squares slope of log(seconds) against log(size)."""
    xs, ys = [math.log(n) for n in sizes], [math.log(s) for s in seconds]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def main() -> None:
    p = parser(__doc__, repeats=2)
    p.set_defaults(dataset="fashion-mnist")
    p.add_argument("--sizes", default="1000,4000,16000,60000")
    p.add_argument("--epochs", type=int, default=2)
    args = p.parse_args()
    device = setup(args)
    full = load_dataset(args.dataset)
    sizes = [min(int(s), len(full.y_train)) for s in args.sizes.split(",")]
    rows = []
    for n in sizes:
        subset = dataclasses.replace(full, x_train=full.x_train[:n], y_train=full.y_train[:n])
        # train_job loads its data by name: hand it the subset (the test split stays whole)
        train_module.load_dataset = lambda *a, _subset=subset, **k: _subset
        config = TrainConfig(dataset=args.dataset, model=args.model, batch_size=args.batch_size, epochs=args.epochs,
                             device=str(device), objectives=(ObjectiveSpec("ce"),))
        steps, walls = [], []
        for _ in range(args.repeats):
            (record,) = train_module.train_job(config)
            steps.append(record["timing"]["train_seconds"] / args.epochs)
            walls.append(record["timing"]["job_seconds"] / args.epochs)
        rows.append({"images": n, "steps_per_epoch": n // args.batch_size, "train_s_per_epoch": statistics.median(steps),
                     "epoch_with_test_pass_s": statistics.median(walls)})
        print(json.dumps(rows[-1]), flush=True)
    train_module.load_dataset = load_dataset
    exponent = fit_exponent([r["images"] for r in rows], [r["train_s_per_epoch"] for r in rows])
    print(json.dumps({"growth_exponent_train_steps": exponent, "expected": 1.0}, indent=2))
    for r in rows:
        print(f"{r['images']:>6} images: {r['train_s_per_epoch']:.3f} s of steps per epoch "
              f"({r['train_s_per_epoch'] / r['steps_per_epoch'] * 1e3:.1f} ms a step), "
              f"{r['epoch_with_test_pass_s']:.3f} s with the test pass")
    print(f"growth exponent of the training steps: {exponent:.3f} (1 = linear)")


if __name__ == "__main__":
    main()
