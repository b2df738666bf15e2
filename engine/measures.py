"""Evaluations that are not one accuracy at one ε: minimal perturbations and attack matrices.

- ``deepfool_rho``: DeepFool's ρ = mean ‖r̂‖₂/‖x‖₂ (GCCS Table 6, I-SCE Fig. 8).
- ``cw_l2``: C&W ℓ2 with the binary search over c, mean ℓ2 and success rate (MMC Table 2, PCL Table 3).
- ``spsa_grid``: SPSA accuracy over iterations × perturbation samples at one ε (GCCS Table 7).
- ``transfer_accuracy`` / ``transfer_matrix``: examples crafted on a substitute run, classified by
  a target run (MMC Fig. 4, PCL Tables 3 and 13).

Every function takes (model, objective) pairs of trained runs, test tensors x (N, C, H, W) in [0, 1]
and y (N,), works in batches of ``batch_size`` (100, as GCCS §5), checks ``cancel`` (a
threading.Event) before each batch and raises InterruptedError("cancelled") when it is set, and calls
``progress(done, total)`` after each batch. Decisions use ``objective.test_predictions``, the run's
own decision rule, as ``engine.robustness.robust_accuracy`` does; attacks come from the registry
(``engine.attacks``) and so run on the objective's logits. ``seed`` seeds the work's own random
stream (``engine.rng.private_rng``: the CPU generator and the evaluating device's, for the block only,
restored afterwards), so random starts and targets are reproducible and no other job's generator is
reseeded or advanced.

Each measure is one entry of ``REGISTRY`` (``Measure``: description, settings validation, compute,
table); ``MEASURES`` maps the names to their descriptions.
"""
from __future__ import annotations

import secrets
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch

from cache.points import cached

from .attacks import attack_params, build_attack, single_run_params
from .config import settings_hash
from .objectives import ConfigError
from .rng import private_rng
from .robustness import load_for_evaluation, validate_eps

Progress = Callable[[int, int], None] | None


def _check(cancel) -> None:
    if cancel is not None and cancel.is_set():
        raise InterruptedError("cancelled")


def _predict(model, objective, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return objective.test_predictions(model, x, model(x))


def _eval(*pairs) -> None:
    for model, objective in pairs:
        model.eval()
        objective.eval()


def _mean(values: list[float]) -> float | None:
    return float(statistics.fmean(values)) if values else None


def _median(values: list[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def _stream(seed: int | None, device) -> Any:
    """The block's own random stream (``engine.rng.private_rng``): the CPU generator and ``device``'s
    seeded by ``seed`` for the block alone, restored afterwards. ``seed`` None: a fresh random seed,
    still a private stream (nothing outside the block sees a reseeded or advanced generator)."""
    return private_rng(secrets.randbits(63) if seed is None else int(seed), device)


def _own_seed(attack, seed: int | None) -> None:
    """torchattacks' APGD, FAB and Square reseed torch from their own ``seed`` attribute: give them ours."""
    if seed is not None and hasattr(attack, "seed"):
        attack.seed = int(seed)


# --- minimal perturbations -----------------------------------------------------------------------------
def _minimal_attack(name: str, model, objective, x, y, params, batch_size, cancel, progress, seed):
    """Runs minimal attack ``name`` over (x, y); per sample: clean-correct, success, correct after the
    attack, ‖r̂‖₂, ‖x‖₂."""
    params = attack_params(name, params or {})
    _eval((model, objective))
    attack = build_attack(name, model, objective, 0.0, **params)
    _own_seed(attack, seed)
    targeted = bool(params.get("targeted", False))
    k = objective.num_classes
    correct, success, accurate, l2, norm = [], [], [], [], []
    with _stream(seed, x.device):
        for i in range(0, len(x), batch_size):
            _check(cancel)
            xb, yb = x[i:i + batch_size], y[i:i + batch_size]
            if hasattr(attack, "on_step"):  # C&W: progress and cancel within the batch, not only between batches
                def on_step(done: int, total: int, start=i, size=len(xb)) -> None:
                    _check(cancel)
                    if progress is not None:
                        progress(start + size * done / total, len(x))
                attack.on_step = on_step
            if targeted:  # drawn here, so success can be checked against them: uniform over y_t ≠ y
                tb = (yb + torch.randint(1, k, yb.shape, device=yb.device)) % k
                attack.set_mode_targeted_by_function(lambda images, labels, t=tb: t, quiet=True)
            adv = attack(xb, yb)
            pred = _predict(model, objective, adv)
            correct.append(_predict(model, objective, xb) == yb)
            success.append(pred == tb if targeted else pred != yb)
            accurate.append(pred == yb)
            l2.append((adv - xb).flatten(1).norm(dim=1))
            norm.append(xb.flatten(1).norm(dim=1))
            if progress is not None:
                progress(min(i + batch_size, len(x)), len(x))
    return params, torch.cat(correct), torch.cat(success), torch.cat(accurate), torch.cat(l2), torch.cat(norm)


def deepfool_rho(model, objective, x: torch.Tensor, y: torch.Tensor, params: dict | None = None,
                 batch_size: int = 100, cancel=None, progress: Progress = None, seed: int | None = 0) -> dict[str, Any]:
    """DeepFool's robustness ρ = mean ‖r̂(x)‖₂ / ‖x‖₂ (Moosavi-Dezfooli et al. 2016, Eq. 15; GCCS
    Table 6, I-SCE Fig. 8), with r̂ the perturbation DeepFool applies (after overshoot and clipping).

    ρ is averaged over the samples the run classifies correctly and DeepFool flips: a misclassified
    sample has r̂ = 0 and would pull ρ down by the test error, not by any lack of robustness, and a
    sample DeepFool cannot flip within ``steps`` has no minimal perturbation to measure. The success
    rate says how many that leaves; ``accuracy`` is the accuracy after the attack over all samples
    (what I-SCE Fig. 8 plots).

    Arguments: params: the registry's ``deepfool`` parameters (steps, overshoot, candidates).
    Returns: {"measure", "rho", "median_rho", "mean_l2", "median_l2", "success_rate", "accuracy",
    "clean_accuracy", "samples", "correct", "succeeded", "params", "seed", "seconds"}; the means are
    None when no sample was flipped.
    """
    started = time.perf_counter()
    params, correct, success, accurate, l2, norm = _minimal_attack("deepfool", model, objective, x, y, params,
                                                                   batch_size, cancel, progress, seed)
    flipped = correct & success
    rho = (l2[flipped] / norm[flipped].clamp(min=1e-12)).tolist()
    return {"measure": "deepfool", "rho": _mean(rho), "median_rho": _median(rho),
            "mean_l2": _mean(l2[flipped].tolist()), "median_l2": _median(l2[flipped].tolist()),
            "success_rate": int(flipped.sum()) / max(int(correct.sum()), 1),
            "accuracy": float(accurate.float().mean()), "clean_accuracy": float(correct.float().mean()),
            "samples": len(y), "correct": int(correct.sum()), "succeeded": int(flipped.sum()),
            "params": params, "seed": seed, "seconds": time.perf_counter() - started}


def cw_l2(model, objective, x: torch.Tensor, y: torch.Tensor, params: dict | None = None, batch_size: int = 100,
          cancel=None, progress: Progress = None, seed: int | None = 0) -> dict[str, Any]:
    """C&W ℓ2 with the binary search over c (Carlini & Wagner 2017; MMC Table 2 Part I: 9 search steps,
    c₀ 0.01, 1000 iterations, lr 0.005): the mean ℓ2 of the successful adversarial examples and the
    success rate (MAT spec A15, PCL Table 3).

    Like ``deepfool_rho`` the statistics are over the samples the run classifies correctly (an
    untargeted attack "succeeds" at distance 0 on the others); a success is a prediction ≠ y, or,
    with ``targeted``, = y_t (drawn uniformly over y_t ≠ y). MMC's code averages over all samples
    with failures at distance 0; with the success rate given, that number follows from these.

    Arguments: params: the registry's ``cw`` parameters (search_steps, initial_const, steps, lr,
    kappa, targeted).
    Returns: {"measure", "mean_l2", "median_l2", "success_rate", "accuracy", "clean_accuracy",
    "samples", "correct", "succeeded", "targeted", "params", "seed", "seconds"}.
    """
    started = time.perf_counter()
    params, correct, success, accurate, l2, _ = _minimal_attack("cw", model, objective, x, y, params, batch_size,
                                                                cancel, progress, seed)
    hit = correct & success
    return {"measure": "cw", "mean_l2": _mean(l2[hit].tolist()), "median_l2": _median(l2[hit].tolist()),
            "success_rate": int(hit.sum()) / max(int(correct.sum()), 1),
            "accuracy": float(accurate.float().mean()),
            "clean_accuracy": float(correct.float().mean()), "samples": len(y), "correct": int(correct.sum()),
            "succeeded": int(hit.sum()), "targeted": params["targeted"], "params": params, "seed": seed,
            "seconds": time.perf_counter() - started}


# --- SPSA over its two budgets ---------------------------------------------------------------------------
def spsa_grid(model, objective, x: torch.Tensor, y: torch.Tensor, eps: float = 0.02,
              iterations: Sequence[int] = (50, 100), spsa_samples: Sequence[int] = (512, 1024, 2048, 8192),
              params: dict | None = None, batch_size: int = 100, cancel=None, progress: Progress = None,
              seed: int | None = 0) -> dict[str, Any]:
    """SPSA accuracy over an iterations × perturbation-samples grid at one ℓ∞ ε: GCCS Table 7 (IT ∈ {50,
    100} × BS ∈ {512, 1024, 2048, 8192} at ε = 0.02, the defaults) and MMC Table 3 (batch 128 / 4096 /
    8192, 10 iterations). The accuracy should fall and level off as both grow (Uesato et al. 2018).

    Each cell reseeds with ``seed``. Cost grows with iterations × samples per test image: on a CPU
    keep the grid small (e.g. iterations (5, 10), samples (64, 128)).

    Arguments: params: other ``spsa`` parameters (lr, delta; iterations and samples come from the grid).
    Returns: {"measure", "eps", "iterations", "spsa_samples", "accuracy" (rows: iterations, columns:
    spsa_samples), "samples", "params", "seed", "seconds"}.
    """
    started = time.perf_counter()
    params = dict(params or {})
    for axis in ("iterations", "samples"):
        if axis in params:
            raise ConfigError(f"spsa.{axis} is an axis of the grid; give it as the grid's values, not as a parameter")
    iterations = [attack_params("spsa", {"iterations": v})["iterations"] for v in iterations]
    spsa_samples = [attack_params("spsa", {"samples": v})["samples"] for v in spsa_samples]
    if not iterations or not spsa_samples:
        raise ConfigError("spsa grid: give at least one iteration count and one sample count")
    base = attack_params("spsa", params)
    _eval((model, objective))
    batches = -(-len(x) // batch_size)
    total, done = len(iterations) * len(spsa_samples) * batches, 0
    grid = []
    for it in iterations:
        row = []
        for s in spsa_samples:
            attack = build_attack("spsa", model, objective, eps, **{**base, "iterations": it, "samples": s})
            correct = 0
            with _stream(seed, x.device):  # every cell from the same seed
                for i in range(0, len(x), batch_size):
                    _check(cancel)
                    xb, yb = x[i:i + batch_size], y[i:i + batch_size]
                    correct += int((_predict(model, objective, attack(xb, yb)) == yb).sum())
                    done += 1
                    if progress is not None:
                        progress(done, total)
            row.append(correct / len(x))
        grid.append(row)
    return {"measure": "spsa-grid", "eps": eps, "iterations": iterations, "spsa_samples": spsa_samples,
            "accuracy": grid, "samples": len(y), "params": {k: v for k, v in base.items()
                                                           if k not in ("iterations", "samples")},
            "seed": seed, "seconds": time.perf_counter() - started}


# --- transfer (black-box) -------------------------------------------------------------------------------
def transfer_accuracy(source, target, x: torch.Tensor, y: torch.Tensor, attack: str, eps: float,
                      params: dict | None = None, batch_size: int = 100, cancel=None, progress: Progress = None,
                      seed: int | None = 0) -> float:
    """Accuracy (against the true label) of the ``target`` run on adversarial examples crafted by
    ``attack`` at ``eps`` on the ``source`` (substitute) run: the transfer-based black-box attack of
    MMC Fig. 4 and PCL Table 3. ``source`` and ``target`` are (model, objective) pairs; with the same
    run on both sides this is the white-box robust accuracy. ε = 0 gives the target's clean accuracy.
    """
    return transfer_matrix({"source": source, "target": target}, x, y, attack, eps, params, batch_size, cancel,
                           progress, seed, sources=["source"], targets=["target"])["accuracy"][0][0]


def transfer_matrix(runs: Mapping[str, Sequence] | Sequence[Sequence], x: torch.Tensor, y: torch.Tensor, attack: str,
                    eps: float, params: dict | None = None, batch_size: int = 100, cancel=None,
                    progress: Progress = None, seed: int | None = 0, sources: Sequence | None = None,
                    targets: Sequence | None = None) -> dict[str, Any]:
    """Transfer accuracies substitute × target (MMC Fig. 4: rows the substitute that crafts the
    examples, columns the target that classifies them; PCL Table 13). The diagonal is the white-box
    robust accuracy; an off-diagonal entry below its column's diagonal means a black-box attack beat
    the white-box one on that target, a sign of gradient masking (attacks.md, sanity checks).

    Arguments:
        runs: name -> (model, objective[, record]), or a sequence of such tuples (named "0", "1", ...).
        sources, targets: names to use as rows / columns. Default: every run.
        attack, eps, params: as ``engine.robustness.robust_accuracy`` (registry name, budget, parameters);
            examples are crafted once per source, with ``seed`` reseeded before each source.

    Returns: {"measure", "sources", "targets", "accuracy" (rows: sources, columns: targets), "attack",
    "eps", "params", "samples", "seed", "seconds"}.
    """
    started = time.perf_counter()
    named = dict(runs) if isinstance(runs, Mapping) else {str(i): r for i, r in enumerate(runs)}
    pairs = {name: (run[0], run[1]) for name, run in named.items()}
    sources = list(pairs) if sources is None else list(sources)
    targets = list(pairs) if targets is None else list(targets)
    for name in sources + targets:
        if name not in pairs:
            raise ConfigError(f"transfer: no run named {name!r}; runs: {', '.join(pairs)}")
    params = single_run_params(attack, params or {}, "the transfer matrix")
    _eval(*pairs.values())
    batches = -(-len(x) // batch_size)
    total, done = len(sources) * batches, 0
    correct = {(s, t): 0 for s in sources for t in targets}
    for s in sources:
        model, objective = pairs[s]
        atk = build_attack(attack, model, objective, eps, **params) if eps > 0 else None
        _own_seed(atk, seed)
        with _stream(seed, x.device):  # every source from the same seed
            for i in range(0, len(x), batch_size):
                _check(cancel)
                xb, yb = x[i:i + batch_size], y[i:i + batch_size]
                xa = atk(xb, yb) if atk is not None else xb
                for t in targets:
                    correct[s, t] += int((_predict(*pairs[t], xa) == yb).sum())
                done += 1
                if progress is not None:
                    progress(done, total)
    return {"measure": "transfer", "sources": sources, "targets": targets,
            "accuracy": [[correct[s, t] / len(x) for t in targets] for s in sources], "attack": attack, "eps": eps,
            "params": params, "samples": len(y), "seed": seed, "seconds": time.perf_counter() - started}
# --- the registry: one entry per measure -------------------------------------------------------------
Loaded = Mapping[str, Sequence]  # run_id -> (model, objective[, record]) of every chosen run


@dataclass(frozen=True)
class Measure:
    """One measure as background work and as a table; adding a measure is adding one entry.

    validate(settings) -> settings: checked, with the defaults filled in (equal settings share a cache
        key); bad input raises ConfigError naming the field.
    compute(runs, run_id, x, y, settings, *, cancel, progress, seed) -> result dict of run ``run_id``;
        ``runs`` holds every chosen run (a measure across runs, like transfer, uses them all).
    table(results, names) -> {"rows" | "grids" | "matrices": [...]}: the cached results of the chosen
        runs as the Robustness page shows them; ``names`` maps run ids to display names (a result
        naming a run not in it, e.g. a deleted transfer target, is left out).
    across_runs: the result of one run depends on the other chosen runs (its cache key names them).
    """

    name: str
    description: str
    validate: Callable[[dict[str, Any]], dict[str, Any]]
    compute: Callable[..., dict[str, Any]]
    table: Callable[[list[dict[str, Any]], Mapping[str, str]], dict[str, list]]
    across_runs: bool = False


REGISTRY: dict[str, Measure] = {}
MEASURES: dict[str, str] = {}  # name -> description (the CLI's choices, the page's select box)


def register(measure: Measure) -> Measure:
    REGISTRY[measure.name] = measure
    MEASURES[measure.name] = measure.description
    return measure


def _measure(name: str) -> Measure:
    if name not in REGISTRY:
        raise ConfigError(f"measure must be one of {', '.join(REGISTRY)}; got {name!r}")
    return REGISTRY[name]


def _params_text(params) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted((params or {}).items()))


# deepfool and cw: one row per (run, settings)
def _minimal_validate(name: str):
    def validate(settings: dict[str, Any]) -> dict[str, Any]:
        return {**settings, "params": attack_params(name, settings.get("params") or {})}
    return validate


def _minimal_table(extra: Callable[[dict[str, Any]], dict[str, Any]]):
    def table(results, names):
        rows = []
        for r in results:
            row = {"run": names[r["run_id"]], "parameters": _params_text(r["params"]), "samples": r["samples"],
                   "seed": r["seed"], "clean accuracy": round(r["clean_accuracy"], 4),
                   "success rate": round(r["success_rate"], 4), "accuracy after": round(r["accuracy"], 4)}
            rows.append(row | extra(r) | {"seconds": round(r["seconds"], 1)})
        return {"rows": rows}
    return table


register(Measure(
    "deepfool", "DeepFool ρ = mean ‖r̂‖₂/‖x‖₂ and success rate (GCCS Table 6, I-SCE Fig. 8)",
    _minimal_validate("deepfool"),
    lambda runs, run_id, x, y, settings, **common: deepfool_rho(*runs[run_id][:2], x, y, settings.get("params"),
                                                                **common),
    _minimal_table(lambda r: {"ρ (mean ‖r̂‖₂/‖x‖₂)": r["rho"], "median ρ": r["median_rho"]})))

register(Measure(
    "cw", "C&W ℓ2 with a binary search over c: mean ℓ2 of the successful examples and success rate (MMC Table 2)",
    _minimal_validate("cw"),
    lambda runs, run_id, x, y, settings, **common: cw_l2(*runs[run_id][:2], x, y, settings.get("params"), **common),
    _minimal_table(lambda r: {"mean ℓ2": r["mean_l2"], "median ℓ2": r["median_l2"]})))


# spsa-grid: one iterations × samples table per run
def _spsa_validate(settings: dict[str, Any]) -> dict[str, Any]:
    settings = dict(settings)
    settings["eps"] = validate_eps("spsa", [settings.get("eps", 0.02)])[0]
    for axis, name in (("iterations", "iterations"), ("spsa_samples", "samples")):
        values = settings.get(axis) or []
        if not values:
            raise ConfigError(f"spsa grid: {axis} needs at least one value")
        settings[axis] = [attack_params("spsa", {name: v})[name] for v in values]
    settings["params"] = {k: v for k, v in attack_params("spsa", settings.get("params") or {}).items()
                          if k not in ("iterations", "samples")}
    return settings


def _spsa_compute(runs, run_id, x, y, settings, **common):
    return spsa_grid(*runs[run_id][:2], x, y, settings["eps"], settings["iterations"], settings["spsa_samples"],
                     settings.get("params"), **common)


def _spsa_table(results, names):
    return {"grids": [{"run": names[r["run_id"]],
                       "title": f"ε = {r['eps']:g} · {_params_text(r['params'])} · {r['samples']} samples · "
                                f"seed {r['seed']}",
                       "rows": [{"iterations": it, **{f"BS {s}": acc for s, acc in zip(r["spsa_samples"], row)}}
                                for it, row in zip(r["iterations"], r["accuracy"])]}
                      for r in results]}


register(Measure("spsa-grid", "SPSA accuracy over iterations × perturbation samples at one ε (GCCS Table 7, "
                              "MMC Table 3)", _spsa_validate, _spsa_compute, _spsa_table))


# transfer: one row per substitute run, classified by every chosen run
def _transfer_validate(settings: dict[str, Any]) -> dict[str, Any]:
    settings = dict(settings)
    settings["params"] = single_run_params(settings.get("attack", "pgd"), settings.get("params") or {},
                                           "the transfer matrix")
    settings["attack"] = settings.get("attack", "pgd")
    settings["eps"] = validate_eps(settings["attack"], [settings.get("eps", 0.1)])[0]
    return settings


def _transfer_compute(runs, run_id, x, y, settings, **common):
    targets = list(runs)
    return transfer_matrix({r: runs[r][:2] for r in targets}, x, y, settings["attack"], settings["eps"],
                           settings.get("params"), sources=[run_id], targets=targets, **common)


def _transfer_table(results, names):
    groups: dict[str, dict[str, Any]] = {}
    for r in results:
        if set(r["targets"]) - set(names):
            continue  # a target run was deleted since
        signature = settings_hash({"s": r["settings"], "n": r["samples"], "seed": r["seed"], "t": r["targets"]})
        group = groups.setdefault(signature, {
            "title": f"{r['attack']} at ε = {r['eps']:g} ({_params_text(r['params'])}) · {r['samples']} samples",
            "targets": [names[t] for t in r["targets"]], "rows": {}})
        group["rows"][r["run_id"]] = r["accuracy"][0]
    matrices = []
    for group in groups.values():
        sources = [names[s] for s in group["rows"]]
        matrix = list(group["rows"].values())
        warnings = []
        for j, target in enumerate(group["targets"]):
            if target not in sources:
                continue
            white = matrix[sources.index(target)][j]
            for i, source in enumerate(sources):
                if source != target and matrix[i][j] < white - 0.02:
                    warnings.append(f"{target}: examples transferred from {source} ({matrix[i][j]:.3f}) beat the "
                                    f"white-box attack on it ({white:.3f}): its gradients are masked (attacks.md)")
        matrices.append({"title": group["title"], "targets": group["targets"], "sources": sources,
                         "accuracy": matrix, "warnings": warnings})
    return {"matrices": matrices}


register(Measure("transfer", "transfer: examples crafted on each substitute run, classified by every run (MMC Fig. 4)",
                 _transfer_validate, _transfer_compute, _transfer_table, across_runs=True))


# --- measures as background work --------------------------------------------------------------------
def measure_settings(measure: str, settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` of ``measure_job`` validated, with the defaults filled in (so that equal settings share
    a cache key): deepfool / cw {"params"}; spsa-grid {"eps" (0.02), "iterations", "spsa_samples",
    "params"}; transfer {"attack" (pgd), "eps" (0.1), "params"}. Bad input raises ConfigError."""
    return _measure(measure).validate(dict(settings))


def measure_job(store, run_ids: list[str], measure: str, settings: dict[str, Any], samples: int | None = 100,
                seed: int = 0, force: bool = False, device="cpu", data_dir=None,
                on_event: Callable[[dict], None] | None = None, cancel=None) -> dict[str, Any]:
    """One measure of ``engine.measures`` for each run (for ``transfer``: one row per substitute run,
    classified by every chosen run), each cached at once under the run as kind ``measure``.

    ``settings``: deepfool / cw: {"params": the attack's parameters}; spsa-grid: {"eps", "iterations",
    "spsa_samples", "params"}; transfer: {"attack", "eps", "params"}. Events as ``sweep_job``.
    """
    spec = _measure(measure)
    emit = on_event or (lambda event: None)
    loaded, x, y = load_for_evaluation(store, run_ids, samples, device, data_dir)
    emit({"type": "sweep-start", "runs": [{"run_id": r, "objective": loaded[r][2]["objective"]} for r in run_ids],
          "points": len(run_ids), "class_names": loaded[run_ids[0]][2]["class_names"]})
    targets = list(run_ids) if spec.across_runs else None
    runs = {r: loaded[r][:2] for r in run_ids}
    started = time.perf_counter()
    points = []
    for index, run_id in enumerate(run_ids):
        key_settings = {"settings": settings, "samples": len(y), "seed": seed, "targets": targets}

        def progress(done: float, total: int, base=index) -> None:
            finished = base * total + done
            elapsed = time.perf_counter() - started
            emit({"type": "sweep-progress", "done": finished, "total": total * len(run_ids),
                  "eta": elapsed / finished * (total * len(run_ids) - finished) if finished else None})

        def compute(run_id=run_id, progress=progress) -> dict[str, Any]:
            return spec.compute(runs, run_id, x, y, settings, cancel=cancel, progress=progress, seed=seed)

        try:  # stored with the key's settings ("settings", "samples", "seed", "targets") and the result
            result, was_cached = cached(store, run_id, measure, key_settings, compute, force=force)
        except InterruptedError:
            from .train import Cancelled
            raise Cancelled("cancelled by the user") from None
        points.append(result)
        emit({"type": "point", "result": result, "cached": was_cached})
    return {"points": points}


def measure_tables(store, run_ids: list[str], measure: str, records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The cached results of one measure for the chosen runs, as the Robustness page shows them:
    {"rows": one row per (run, settings) for deepfool / cw; "grids": per run the SPSA table;
    "matrices": per transfer setting the substitute × target matrix}. Never computes."""
    spec = _measure(measure)
    names = {run_id: f"{record['objective'].upper()} ({run_id[:6]})" for run_id, record in records.items()}
    results = [r for run_id in run_ids for r in store.list_results(run_id, measure)]
    out: dict[str, Any] = {"rows": [], "grids": [], "matrices": []}
    for part, values in spec.table(results, names).items():
        out[part].extend(values)
    return out
