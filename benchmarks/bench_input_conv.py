"""PGD-10 with the first convolution's image gradient from oneDNN's backward (``nn.Conv2d``) vs as a
forward convolution (``models.input_conv.InputConv2d``), the two alternated on the same model and
images (random pixels of the data set's shape: the time does not depend on them).

    python benchmarks/bench_input_conv.py [--dataset digits|mnist] [--model cnn] [--threads 1]
"""
from __future__ import annotations

import statistics
import time

import torch
import torchattacks
from torch import nn

from common import parser, setup
from engine.data import DATASETS
from models import build_model
from models.input_conv import InputConv2d


def main() -> None:
    p = parser(__doc__, repeats=7)
    args = p.parse_args()
    device = setup(args)
    info = DATASETS[args.dataset]
    torch.manual_seed(0)
    model = build_model(args.model, info.shape[0], info.shape[1], info.num_classes).to(device).eval()
    x = torch.rand((args.batch_size, *info.shape), device=device)
    y = torch.randint(0, info.num_classes, (args.batch_size,), device=device)
    attack = torchattacks.PGD(model, eps=0.1, alpha=0.025, steps=10, random_start=True)
    paths = {"nn.Conv2d backward": nn.Conv2d.forward, "InputConv2d": InputConv2d.forward}
    seconds: dict[str, list[float]] = {label: [] for label in paths}
    try:
        for _ in range(args.repeats + 1):
            for label, forward in paths.items():
                InputConv2d.forward = forward
                t0 = time.perf_counter()
                attack(x, y)
                seconds[label].append(time.perf_counter() - t0)
    finally:
        InputConv2d.forward = paths["InputConv2d"]
    old, new = (statistics.median(t[1:]) for t in seconds.values())
    print(f"{args.dataset} {info.shape}, {args.model}, PGD-10 on {args.batch_size} images, {device}, "
          f"{torch.get_num_threads()} thread(s): nn.Conv2d backward {old * 1e3:.1f} ms, "
          f"InputConv2d {new * 1e3:.1f} ms, speed-up {old / new:.2f}×")


if __name__ == "__main__":
    main()
