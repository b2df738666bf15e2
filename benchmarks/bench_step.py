"""Seconds per training step (forward, backward, SGD update; CE) of one backbone on random images of
a dataset's shape, with no data needed: what a preset's epoch costs before it is run. The presets'
notes quote it (ResNet-18 on 2 CPU cores for the *-paper presets).

    python benchmarks/bench_step.py [--model resnet18] [--dataset cifar10] [--batch-size 200] [--steps 3] [--threads 2]
"""
from __future__ import annotations

import json
import statistics
import time

import torch
import torch.nn.functional as F

from common import parser, setup, sync
from engine.data import DATASETS
from models import build_model


def main() -> None:
    p = parser(__doc__, repeats=1)
    p.set_defaults(model="resnet18", dataset="cifar10")
    p.add_argument("--steps", type=int, default=3, help="timed steps, after two untimed ones")
    args = p.parse_args()
    device = setup(args)
    info = DATASETS[args.dataset]
    c, h, w = info.shape
    model = build_model(args.model, c, h, info.num_classes, dropout=0.2, mean=(0.5,) * c, std=(0.25,) * c).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand((args.batch_size, c, h, w), generator=gen).to(device)
    y = torch.randint(0, info.num_classes, (args.batch_size,), generator=gen).to(device)
    times = []
    for i in range(args.steps + 2):
        sync(device)
        t0 = time.perf_counter()
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        sync(device)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    step = statistics.median(times)
    # the training split's size, for the epoch estimate
    train_images = {"mnist": 60_000, "fashion-mnist": 60_000, "svhn": 73_257, "cifar10": 50_000, "cifar100": 50_000,
                    "digits": 1_347}[args.dataset]
    steps_per_epoch = train_images // args.batch_size
    print(json.dumps({"model": args.model, "dataset": args.dataset, "batch_size": args.batch_size,
                      "device": str(device), "torch_threads": torch.get_num_threads(), "step_seconds": step,
                      "steps_per_epoch": steps_per_epoch, "epoch_minutes": step * steps_per_epoch / 60}, indent=2))


if __name__ == "__main__":
    main()
