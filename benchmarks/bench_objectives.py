"""Step time of every objective relative to CE, measured side by side in one run.

Each objective gets a workbench member (same model, same seed) and takes the workbench's own
training step (``engine.train.train_step``: loss, hooks, optimiser) on the same batch; the
contenders alternate step by step and the medians are compared. Targets (issue 3): ≤ 1.10× CE for
gccs, mmc, isce, center and pcl; MAT reports its BIBO cost separately, ≤ (inner steps + 1.2)× CE.

    python benchmarks/bench_objectives.py [--model cnn] [--steps 60] [--repeats 3] [--threads 1]
"""
from __future__ import annotations

import json
import statistics
import time

import torch

from common import parser, setup, sync
from engine.config import ObjectiveSpec, TrainConfig
from engine.data import load_dataset
from engine.objectives import OBJECTIVES
from engine.train import build_member, train_step

TARGET = 1.10


def contenders() -> dict[str, ObjectiveSpec]:
    """Every registered objective with its defaults; MAT also without BIBO, to separate its cost."""
    specs = {name: ObjectiveSpec(name) for name in OBJECTIVES}
    variant = next((p for p in OBJECTIVES["mat"].PARAMS if p.name == "variant"), None) if "mat" in OBJECTIVES else None
    if variant is not None and variant.choices:
        no_bibo = [v for v in variant.choices if "bibo" not in v]
        if no_bibo:
            specs["mat (no BIBO)"] = ObjectiveSpec("mat", {"variant": max(no_bibo, key=len)})
    return specs


def measure(config: TrainConfig, steps: int, device) -> dict[str, float]:
    data = load_dataset(config.dataset).to(device)
    members = {label: build_member(config, spec, data, device)[0] for label, spec in contenders().items()}
    for member in members.values():
        member.objective.set_epoch(10_000)  # past any warm-up: time the full objective
    idx = torch.randperm(len(data.y_train), generator=torch.Generator().manual_seed(0))[: config.batch_size]
    xb, yb = data.x_train[idx.to(device)], data.y_train[idx.to(device)]
    times: dict[str, list[float]] = {label: [] for label in members}
    for step in range(steps + 5):
        for label, member in members.items():
            sync(device)
            t0 = time.perf_counter()
            train_step(member, xb, yb, device)
            sync(device)
            if step >= 5:
                times[label].append(time.perf_counter() - t0)
    return {label: statistics.median(t) for label, t in times.items()}


def main() -> None:
    p = parser(__doc__, repeats=3)
    p.add_argument("--steps", type=int, default=60)
    args = p.parse_args()
    device = setup(args)
    config = TrainConfig.from_dict(dict(dataset=args.dataset, model=args.model, batch_size=args.batch_size,
                                        device=device.type))
    runs = [measure(config, args.steps, device) for _ in range(args.repeats)]
    ratios = {label: statistics.median(r[label] / r["ce"] for r in runs) for label in runs[0]}
    seconds = {label: statistics.median(r[label] for r in runs) for label in runs[0]}
    mat_params = {}
    if "mat" in OBJECTIVES:
        mat_params = {p.name: p.default for p in OBJECTIVES["mat"].PARAMS}
    inner = next((v for k, v in mat_params.items() if k.endswith("steps")), None)
    print(json.dumps({"setting": vars(args) | {"device": str(device), "torch_threads": torch.get_num_threads()},
                      "step_seconds": seconds, "ratio_to_ce": ratios}, indent=2))
    print()
    for label, ratio in ratios.items():
        if label == "ce":
            continue
        if label == "mat":
            target = (inner + 1.2) if inner is not None else float("nan")
            note = f"(target ≤ {target:.1f}: {inner} inner PGD steps + 1.2)"
        else:
            note = f"(target ≤ {TARGET:.2f})"
        print(f"{label:>14}: {seconds[label] * 1e3:7.2f} ms  {ratio:5.2f}× CE  {note}")
    print(f"{'ce':>14}: {seconds['ce'] * 1e3:7.2f} ms")


if __name__ == "__main__":
    main()
