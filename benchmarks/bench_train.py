"""Training speed, measured side by side in one run (this machine is noisy: compare ratios, not seconds).

1. Seconds per epoch: the workbench loop (``engine.train.train_job``: lockstep machinery, per-member
   random streams, progress events, the per-epoch test evaluation, metrics and latent snapshot)
   against a bare PyTorch loop on the same model, data (on the device, index-slice batches) and batch
   size that also reports test accuracy each epoch. Target: ≤ 1.10×. The bare loop without any
   evaluation is printed too: on digits an epoch is only 6 steps, so the test pass is a visible share.
2. Step time of GCCS against CE on the same model and batches (the GCCS paper reports +1.9 %):
   (a) bare optimiser steps, interleaved; (b) the per-member step timers of one lockstep workbench
   job, where both objectives see identical batches. Target: ≤ 1.10×.

Each measurement alternates the contenders and repeats; the medians are reported.

    python benchmarks/bench_train.py [--model cnn] [--epochs 30] [--repeats 5] [--device cpu] [--threads 2]
"""
from __future__ import annotations

import json
import statistics
import time

import torch

from common import parser, setup, sync
from engine.config import ObjectiveSpec, TrainConfig
from engine.data import load_dataset
from engine.objectives import build_objective
from engine.train import train_job
from models import build_model


def bare_epochs(config: TrainConfig, epochs: int, device, evaluate: bool) -> float:
    """Seconds per epoch of the plainest loop: data on the device, index slices, CE, SGD; with
    ``evaluate`` it also computes the test accuracy each epoch, as every per-epoch report must."""
    data = load_dataset(config.dataset).to(device)
    torch.manual_seed(config.seed)
    model = build_model(config.model, data.in_channels, data.image_size, data.num_classes,
                        dropout=config.dropout, mean=data.mean, std=data.std).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, nesterov=True,
                          weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    n, b = len(data.y_train), config.batch_size
    g = torch.Generator().manual_seed(config.seed)
    times, accuracies = [], []
    for _ in range(epochs):
        sync(device)
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=g)[: n // b * b].view(-1, b).to(device)
        model.train()
        for idx in perm:
            loss = torch.nn.functional.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
        if evaluate:
            model.eval()
            with torch.no_grad():
                accuracies.append((model(data.x_test).argmax(1) == data.y_test).float().mean().item())
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])  # the first epoch warms up


def workbench_epochs(config: TrainConfig) -> float:
    records = train_job(config)
    times = [h["time"] for h in records[0]["history"]]
    return statistics.median(b - a for a, b in zip(times, times[1:]))  # epoch to epoch, eval included


def bare_steps(config: TrainConfig, device, steps: int = 60) -> dict[str, float]:
    """Median step time per objective, interleaved so that both see the same machine state."""
    data = load_dataset(config.dataset).to(device)
    contenders = {}
    for name in ("ce", "gccs"):
        objective = build_objective(name, data.num_classes).to(device)
        torch.manual_seed(config.seed)
        model = build_model(config.model, data.in_channels, data.image_size, objective.latent_dim,
                            dropout=config.dropout, mean=data.mean, std=data.std).to(device)
        opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, nesterov=True)
        contenders[name] = (objective, model, opt)
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(data.y_train), generator=g)[: config.batch_size].to(device)
    xb, yb = data.x_train[idx], data.y_train[idx]
    times = {name: [] for name in contenders}
    for step in range(steps + 5):
        for name, (objective, model, opt) in contenders.items():
            sync(device)
            t0 = time.perf_counter()
            out = objective.loss(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            opt.step()
            sync(device)
            if step >= 5:
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    p = parser(__doc__, repeats=5)
    p.add_argument("--epochs", type=int, default=30)
    args = p.parse_args()
    device = setup(args)
    base = TrainConfig.from_dict(dict(dataset=args.dataset, model=args.model, epochs=args.epochs,
                                      batch_size=args.batch_size, device=str(device.type), latent_samples=1000))
    ce_only = base.with_(objectives=(ObjectiveSpec("ce"),))
    both = base.with_(objectives=(ObjectiveSpec("ce"), ObjectiveSpec("gccs")))

    loop = {"workbench": [], "bare": [], "bare_train_only": []}
    steps = {"ce": [], "gccs": []}
    lockstep = []
    for _ in range(args.repeats):
        loop["workbench"].append(workbench_epochs(ce_only))
        loop["bare"].append(bare_epochs(ce_only, args.epochs, device, evaluate=True))
        loop["bare_train_only"].append(bare_epochs(ce_only, args.epochs, device, evaluate=False))
        for name, t in bare_steps(base, device).items():
            steps[name].append(t)
        ce, gccs = train_job(both)
        lockstep.append(gccs["timing"]["train_seconds"] / ce["timing"]["train_seconds"])

    med = {k: statistics.median(v) for k, v in loop.items()}
    step_med = {k: statistics.median(v) for k, v in steps.items()}
    result = {
        "setting": {"dataset": args.dataset, "model": args.model, "batch_size": args.batch_size,
                    "epochs": args.epochs, "repeats": args.repeats, "device": str(device),
                    "torch_threads": torch.get_num_threads(), "torch": torch.__version__},
        "seconds_per_epoch": {"workbench": med["workbench"], "bare_pytorch_with_test_accuracy": med["bare"],
                              "ratio": med["workbench"] / med["bare"], "target": 1.10,
                              "bare_pytorch_train_only": med["bare_train_only"],
                              "ratio_vs_train_only": med["workbench"] / med["bare_train_only"]},
        "step_seconds": {"ce": step_med["ce"], "gccs": step_med["gccs"],
                         "ratio_bare": step_med["gccs"] / step_med["ce"],
                         "ratio_lockstep_job": statistics.median(lockstep), "target": 1.10},
    }
    print(json.dumps(result, indent=2))
    print(f"\nseconds/epoch  workbench {med['workbench']:.4f}  bare loop with per-epoch test accuracy "
          f"{med['bare']:.4f}  ratio {med['workbench'] / med['bare']:.3f}  (target ≤ 1.10)")
    print(f"               bare loop, training only {med['bare_train_only']:.4f}  "
          f"ratio {med['workbench'] / med['bare_train_only']:.3f}  (what the per-epoch report itself costs)")
    print(f"step time      gccs {step_med['gccs'] * 1e3:.2f} ms  ce {step_med['ce'] * 1e3:.2f} ms  "
          f"ratio {step_med['gccs'] / step_med['ce']:.3f} bare, {statistics.median(lockstep):.3f} in a lockstep job "
          f"(target ≤ 1.10; paper +1.9 %)")


if __name__ == "__main__":
    main()
