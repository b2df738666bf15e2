"""Metrics computed on latents and predictions (GCCS spec §7): r_AB, macro F-score, kurtosis; robust
accuracy under an attack, cached per (run, attack, parameters, ε, sample set, seed); sweeps over an ε
grid as background work; the sanity checks of attacks.md that reveal gradient masking.

Everything works on tensors and stays on their device.
"""
from __future__ import annotations


import time
from typing import Any, Callable

import torch

from .config import settings_hash
from .sanity import cross_attack_warnings, sanity_warnings


# --- robust accuracy ---------------------------------------------------------------------------------
def robust_accuracy(model, objective, x: torch.Tensor, y: torch.Tensor, attack: str, eps: float,
                    params: dict | None = None, batch_size: int = 100, cancel=None,
                    progress: Callable[[int, int], None] | None = None) -> float:
    """Accuracy against the true label of ``attack`` at ``eps`` (attacks run in batches of 100, as
    GCCS §5 does; ε = 0 is the clean accuracy). The model must be in eval mode. ``cancel``: an Event
    checked between batches; ``progress(done, total)`` is called after each batch."""
    from .attacks import build_attack  # torchattacks is only needed once someone attacks

    model.eval()
    objective.eval()
    correct = 0
    atk = build_attack(attack, model, objective, eps, **(params or {})) if eps > 0 else None
    for i in range(0, len(x), batch_size):
        if cancel is not None and cancel.is_set():
            raise InterruptedError("cancelled")
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        xa = atk(xb, yb) if atk is not None else xb
        with torch.no_grad():
            # the same decision rule as the clean accuracy of the run (PCL may predict by prototype)
            correct += int((objective.test_predictions(model, xa, model(xa)) == yb).sum())
        if progress is not None:
            progress(min(i + batch_size, len(x)), len(x))
    return correct / len(x)


# --- cached results ---------------------------------------------------------------------------------
def seed_device(seed: int, device) -> None:
    """Seed the random generator of ``device`` only (torch.manual_seed would also reseed every GPU,
    under a training job running there). Jobs of one device run one at a time on its worker, so an
    evaluation never reseeds the generator of a training step in progress."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.manual_seed(seed) if device.index is None else torch.cuda.default_generators[device.index].manual_seed(seed)
    else:
        torch.random.default_generator.manual_seed(seed)


def result_key(run_id: str, kind: str, settings: dict[str, Any]) -> str:
    """The store key of one evaluation of one run: ``<run>:<kind>:<hash of everything that shapes it>``."""
    return f"{run_id}:{kind}:{settings_hash(settings)}"


def accuracy_settings(attack: str, params: dict[str, Any], eps: float, samples: int, seed: int = 0) -> dict[str, Any]:
    """What determines a robust-accuracy number: attack, its parameters, ε, the first ``samples`` test
    points and the seed of its random starts."""
    return {"attack": attack, "params": dict(params), "eps": float(eps), "samples": int(samples), "seed": int(seed)}


def accuracy_point(store, run_id: str, model, objective, x: torch.Tensor, y: torch.Tensor, attack: str,
                   params: dict[str, Any], eps: float, seed: int = 0, force: bool = False, cancel=None,
                   progress: Callable[[int, int], None] | None = None) -> tuple[dict[str, Any], bool]:
    """Robust accuracy of one run at one ε, from the store when cached, else computed and stored.

    Returns (result, cached). The result dict holds kind "accuracy", run_id, attack, params, eps,
    samples, seed, accuracy, seconds (of the computation) and created. ``params`` must be validated
    (``engine.attacks.attack_params``). The random starts are seeded per point, so a point does not
    depend on which other points were computed before it.
    """
    def compute() -> dict[str, Any]:
        return {"accuracy": robust_accuracy(model, objective, x, y, attack, eps, params, cancel=cancel,
                                            progress=progress)}

    return cached_point(store, run_id, "accuracy", accuracy_settings(attack, params, eps, len(y), seed), x.device,
                        force, compute)


def cached_point(store, run_id: str, kind: str, settings: dict[str, Any], device, force: bool,
                 compute: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], bool]:
    """The stored result of (run, kind, settings), or ``compute()`` run with the device's generator
    seeded by ``settings["seed"]`` and stored at once with the settings, seconds and time of creation.
    Returns (result, cached)."""
    key = result_key(run_id, kind, settings)
    cached = None if force or store is None else store.get_result(key)
    if isinstance(cached, dict):
        return cached, True
    started = time.perf_counter()
    seed_device(settings["seed"], device)
    result = {"kind": kind, "run_id": run_id, **settings, **compute(), "seconds": time.perf_counter() - started,
              "created": time.time()}
    if store is not None:
        store.put_result(key, result)
    return result, False


def validate_eps(attack: str, eps) -> list[float]:
    """The ε grid of a sweep, parsed ("0,0.05,0.1" or numbers), checked against the attack's budget,
    sorted and without duplicates."""
    from . import attacks
    from .objectives import ConfigError

    if isinstance(eps, str):
        try:
            eps = [float(e) for e in eps.replace(" ", "").split(",") if e]
        except ValueError:
            raise ConfigError(f"eps must be comma-separated numbers; got {eps!r}") from None
    values = sorted(set(float(e) for e in eps))
    if not values:
        raise ConfigError("eps: give at least one value")
    attacks.validate_budget(attack, values)
    return values


# --- sweeps as background work ---------------------------------------------------------------------
def load_for_evaluation(store, run_ids: list[str], samples: int | None, device="cpu", data_dir=None):
    """The stored runs (model, objective, record) and the first ``samples`` test points of their dataset
    (None: the whole test split), on ``device``. Every run must be on the same dataset."""
    from .data import load_dataset
    from .objectives import ConfigError
    from .train import load_run

    if not run_ids:
        raise ConfigError("runs: choose at least one stored run")
    missing = [r for r in run_ids if not store.has_run(r)]
    if missing:
        raise ConfigError(f"runs: no stored run {missing[0]!r}; `python -m engine runs` lists them")
    loaded = {r: load_run(store, r, device) for r in run_ids}
    datasets = sorted({record["dataset"] for _, _, record in loaded.values()})
    if len(datasets) > 1:
        raise ConfigError(f"runs: all runs of one evaluation must share a dataset; got {', '.join(datasets)}")
    data = load_dataset(datasets[0], data_dir=data_dir)
    n = len(data.y_test) if samples is None else max(1, min(int(samples), len(data.y_test)))
    return loaded, data.x_test[:n].to(device), data.y_test[:n].to(device)


def sweep_job(store, run_ids: list[str], attack: str, params: dict[str, Any], eps: list[float],
              samples: int | None = None, seed: int = 0, force: bool = False, device="cpu", data_dir=None,
              on_event: Callable[[dict], None] | None = None, cancel=None) -> dict[str, Any]:
    """Robust accuracy of several runs under one attack over an ε grid, point by point.

    The grid is walked ε by ε with every run at each ε, so all curves advance together; each point is
    read from the store when cached, else computed and stored at once (a cancelled sweep keeps the
    points it finished). Events for ``on_event``: ``sweep-start`` (runs, points), ``sweep-progress``
    (done/total test samples attacked, ETA), ``point`` (one result dict, cached or not).
    Returns {"points": [...], "warnings": {run_id: [...]}}.
    """
    from .attacks import attack_params

    emit = on_event or (lambda event: None)
    params = attack_params(attack, params)
    loaded, x, y = load_for_evaluation(store, run_ids, samples, device, data_dir)
    grid = sorted(set(float(e) for e in eps))
    total = len(grid) * len(run_ids) * len(y)
    emit({"type": "sweep-start", "runs": [{"run_id": r, "objective": loaded[r][2]["objective"]} for r in run_ids],
          "attack": attack, "params": params, "eps": grid, "samples": len(y), "points": len(grid) * len(run_ids),
          "class_names": loaded[run_ids[0]][2]["class_names"]})
    started, done, computed = time.perf_counter(), 0, 0
    points = []
    for e in grid:
        for run_id in run_ids:
            model, objective, _ = loaded[run_id]

            def progress(n: int, _total: int, base=done) -> None:
                elapsed = time.perf_counter() - started
                rate = (computed + n) / elapsed if elapsed > 0 else 0.0
                emit({"type": "sweep-progress", "done": base + n, "total": total,
                      "eta": (total - base - n) / rate if rate > 0 else None})

            try:
                result, cached = accuracy_point(store, run_id, model, objective, x, y, attack, params, e, seed,
                                                force, cancel, progress)
            except InterruptedError:
                from .train import Cancelled
                raise Cancelled("cancelled by the user") from None
            done += len(y)
            computed += 0 if cached else len(y)
            points.append(result)
            emit({"type": "point", "result": result, "cached": cached})
            emit({"type": "sweep-progress", "done": done, "total": total, "eta": None if done < total else 0.0})
    warnings = {}
    for run_id in run_ids:
        own = [p for p in points if p["run_id"] == run_id]
        warnings[run_id] = sanity_warnings([p["eps"] for p in own], [p["accuracy"] for p in own], attack)
    return {"points": points, "warnings": warnings}


def robustness_charts(results: list[dict[str, Any]], records: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The Robustness page's charts as data: one chart per attack (an adaptive attack joins the chart
    of the standard attack it is paired with) and test-sample count, one line per (run, attack,
    parameters), points sorted by ε, with the sanity warnings that concern the chart.

    ``results``: accuracy result dicts (cached and live, duplicates allowed); ``records``: the runs.
    """
    from .attacks import ATTACKS, budget_of

    unique = {}
    for r in results:
        if r.get("kind") == "accuracy" and r["run_id"] in records and r["attack"] in ATTACKS:
            settings = accuracy_settings(r["attack"], r["params"], r["eps"], r["samples"], r["seed"])
            unique[result_key(r["run_id"], "accuracy", settings)] = r
    charts: dict[tuple, dict[str, Any]] = {}
    for r in unique.values():
        spec = ATTACKS[r["attack"]]
        chart_attack = spec.pairs_with or r["attack"]
        chart = charts.setdefault((chart_attack, r["samples"]), {
            "attack": chart_attack, "samples": r["samples"], "title": ATTACKS[chart_attack].title,
            "axis": budget_of(chart_attack).label, "lines": {}, "warnings": []})
        params = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(r["params"].items()))
        line = chart["lines"].setdefault((r["run_id"], r["attack"], params, r["seed"]), {
            "run_id": r["run_id"], "objective": records[r["run_id"]]["objective"], "attack": r["attack"],
            "params": params, "seed": r["seed"], "adaptive": spec.pairs_with is not None,
            "adversarially_trained": records[r["run_id"]]["settings"].get("adv_attack", "none") != "none",
            "points": []})
        line["points"].append((r["eps"], r["accuracy"]))
    out = []
    for key in sorted(charts, key=lambda k: (list(ATTACKS).index(k[0]), -k[1])):
        chart = charts[key]
        lines = []
        for line in chart["lines"].values():
            line["points"].sort()
            line["eps"] = [e for e, _ in line["points"]]
            line["accuracy"] = [a for _, a in line["points"]]
            del line["points"]
            for w in sanity_warnings(line["eps"], line["accuracy"], line["attack"]):
                chart["warnings"].append(f"{line['objective'].upper()} ({line['run_id'][:6]}) · {line['attack']}: {w}")
            lines.append(line)
        # params with one value in the whole chart need not be repeated in every label
        chart["lines"] = sorted(lines, key=lambda l: (l["run_id"], l["adaptive"], l["attack"], l["params"]))
        chart["shared_params"] = len({l["params"] for l in lines}) <= 1
        out.append(chart)
    for run_id in records:
        own = [r for r in unique.values() if r["run_id"] == run_id]
        for attack, samples, message in cross_attack_warnings(own):
            for chart in out:
                if chart["attack"] == attack and chart["samples"] == samples and any(l["run_id"] == run_id for l in chart["lines"]):
                    chart["warnings"].append(f"{records[run_id]['objective'].upper()} ({run_id[:6]}): {message}")
    return out


# --- named suites (python -m engine evaluate) -------------------------------------------------------
GCCS_EPS = (0.0, 0.025, 0.05, 0.075, 0.1)  # GCCS Fig. 4 (MNIST): 0 … 0.10
SUITES: dict[str, tuple[str, tuple[tuple[str, dict[str, Any], tuple[float, ...]], ...]]] = {
    "pgd10": ("PGD-10 (step 2.5·ε/10) over five ε: the issue-4 check", (("pgd", {"steps": 10}, GCCS_EPS),)),
    "gccs-paper": ("GCCS Fig. 4: FGSM, PGD-5, TGSM-5 over ε 0 … 0.1",
                   (("fgsm", {}, GCCS_EPS), ("pgd", {"steps": 5}, GCCS_EPS), ("tgsm", {"steps": 5}, GCCS_EPS))),
    "adaptive": ("PGD-10 on CE, on the objective's adaptive objective and on the margin, paired (attacks.md)",
                 (("pgd", {"steps": 10}, GCCS_EPS), ("adaptive-pgd", {"steps": 10}, GCCS_EPS),
                  ("margin-pgd", {"steps": 10}, GCCS_EPS))),
    "masking": ("the gradient-masking checks: FGSM vs PGD-10 vs gradient-free Square up to ε 0.3",
                (("fgsm", {}, (0.0, 0.1, 0.2, 0.3)), ("pgd", {"steps": 10}, (0.0, 0.1, 0.2, 0.3)),
                 ("square", {}, (0.0, 0.1, 0.2, 0.3)))),
    "natural": ("MMC's natural corruptions: Gaussian noise σ and rotation",
                (("gaussian-noise", {}, (0.0, 0.05, 0.1, 0.2, 0.3)), ("rotation", {}, (0.0, 10.0, 20.0, 30.0)))),
}


def suite_job(store, run_ids: list[str], suite: str, samples: int | None = None, seed: int = 0,
              force: bool = False, device="cpu", data_dir=None, on_event=None, cancel=None) -> dict[str, Any]:
    """Every sweep of a named suite on the same runs; returns the curves per attack and run, and the
    sanity warnings (per sweep, and across the suite's attacks)."""
    from .objectives import ConfigError

    if suite not in SUITES:
        raise ConfigError(f"suite must be one of {', '.join(SUITES)}; got {suite!r}")
    out: dict[str, Any] = {"suite": suite, "description": SUITES[suite][0], "attacks": [], "warnings": []}
    points = []
    for attack, params, grid in SUITES[suite][1]:
        result = sweep_job(store, run_ids, attack, params, list(grid), samples, seed, force, device, data_dir,
                           on_event, cancel)
        points += result["points"]
        curves = {r: {"eps": [p["eps"] for p in result["points"] if p["run_id"] == r],
                      "accuracy": [p["accuracy"] for p in result["points"] if p["run_id"] == r]} for r in run_ids}
        out["attacks"].append({"attack": attack, "params": result["points"][0]["params"] if result["points"] else params,
                               "samples": result["points"][0]["samples"] if result["points"] else None,
                               "curves": curves, "seconds": sum(p["seconds"] for p in result["points"])})
        out["warnings"] += [f"{r[:6]} · {attack}: {w}" for r, ws in result["warnings"].items() for w in ws]
    for run_id in run_ids:
        out["warnings"] += [f"{run_id[:6]}: {message}"
                            for _, _, message in cross_attack_warnings([p for p in points if p["run_id"] == run_id])]
    return out


