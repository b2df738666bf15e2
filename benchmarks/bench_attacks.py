"""The workbench's PGD sweep against calling torchattacks.PGD directly, side by side in one run;
and the time to redraw the latent view under attack for a new ε from the cache.

Sweep: both attack the same trained model (a CE run trained here on digits, unless --run names a
stored one) on the same test samples over the same ε grid, in batches of 100, with the same PGD
settings; the contenders alternate and the medians are compared. The workbench side is the whole
path of a sweep job (``engine.robustness.sweep_job`` with --force: loading the run and the data,
the attack, predictions by the objective's rule, writing every point to the store).
Target (issue 4): ≤ 1.10×.

Redraw: what the Latent page does when the ε slider moves, for two runs (CE and GCCS) with 1,000
points each (digits has 450 test images, so these latents are of the first 1,000 training images):
read the clean and attacked latents from the store, project them (``engine.latent.shift_view``),
build the scatter with arrows and the histogram, and serialise them to JSON as st.plotly_chart does.
Target: ≤ 0.5 s for 1,000 points a run.

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
from engine.suites import sweep_job
from engine.latent import cached_shift, shift_point, shift_view
from engine.train import load_run, train_job
from ui.figures import distance_histogram, shift_figure

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
    from cache import RunStore
    import tempfile

    if args.run:
        store = RunStore()
        run_id = args.run
        record = store.get_run(run_id)
    else:
        store = RunStore(tempfile.mkdtemp(prefix="bench-attacks-"))
        config = TrainConfig(dataset=args.dataset, model=args.model, epochs=20, device=device.type,
                             objectives=(ObjectiveSpec("ce"), ObjectiveSpec("gccs")))
        records = train_job(config, store)
        record, run_id = records[0], records[0]["run_id"]
    model, objective, _ = load_run(store, run_id, device)
    data = load_dataset(record["dataset"]).to(device)
    x, y = data.x_test, data.y_test
    params = {"steps": args.steps, "alpha": args.alpha}
    times = {"workbench": [], "torchattacks": []}
    for _ in range(args.repeats):
        for name in times:
            torch.manual_seed(0)
            sync(device)
            t0 = time.perf_counter()
            if name == "workbench":
                points = sweep_job(store, [run_id], "pgd", params, list(EPS), force=True, device=device)["points"]
                accuracy = [p["accuracy"] for p in points]
            else:
                direct = direct_sweep(model, objective, x, y, args.steps, args.alpha)
            sync(device)
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    out = {"eps": EPS, "workbench_accuracy": accuracy, "torchattacks_accuracy": direct,
           "seconds": med, "ratio": med["workbench"] / med["torchattacks"], "target": 1.10,
           "samples": len(y), "device": str(device), "torch_threads": torch.get_num_threads()}
    redraw = None
    if not args.run:
        redraw = redraw_seconds(store, [r["run_id"] for r in records], data, device, args.repeats)
        out["redraw_seconds"] = redraw
    print(json.dumps(out, indent=2))
    print(f"\nPGD-{args.steps} sweep over {len(EPS)} ε on {len(y)} samples: workbench {med['workbench']:.2f} s, "
          f"torchattacks.PGD directly {med['torchattacks']:.2f} s, ratio {med['workbench'] / med['torchattacks']:.3f} "
          f"(target ≤ 1.10)")
    if redraw:
        print(f"Latent view for a new ε from the cache, 2 runs × {redraw['points']} points: "
              f"{redraw['median']:.3f} s ({redraw['median'] / 2:.3f} s a run; target ≤ 0.5 s a run)")


def redraw_seconds(store, run_ids: list[str], data, device, repeats: int, points: int = 1000) -> dict:
    """Median time of one slider move on the Latent page, for every run, from the cache."""
    classes, grid = [0, 1, 9], (0.0, 0.05, 0.1)
    x, y = data.x_train[:points], data.y_train[:points]
    for run_id in run_ids:
        model, objective, _ = load_run(store, run_id, device)
        for e in grid:
            shift_point(store, run_id, model, objective, x, y, "pgd", {"steps": 10, "alpha": 0.01}, e)
    records = {r: store.get_run(r) for r in run_ids}
    times = []
    for i in range(max(repeats, 3) * 2):
        eps = grid[1 + i % 2]  # alternate, as a user moving the slider back and forth
        t0 = time.perf_counter()
        for run_id in run_ids:
            clean = cached_shift(store, run_id, "pgd", {"steps": 10, "alpha": 0.01}, 0.0, points)
            attacked = cached_shift(store, run_id, "pgd", {"steps": 10, "alpha": 0.01}, eps, points)
            view = shift_view(clean, attacked, clean["y"], classes, records[run_id]["geometry"])
            shift_figure(view, classes, arrows=True, trajectories=True).to_json()
            distance_histogram(view, run_id).to_json()
        times.append(time.perf_counter() - t0)
    return {"median": statistics.median(times), "max": max(times), "points": points, "runs": len(run_ids)}


if __name__ == "__main__":
    main()
