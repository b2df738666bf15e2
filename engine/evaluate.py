"""Metrics computed on latents and predictions (GCCS spec §7): r_AB, macro F-score, kurtosis; robust
accuracy under an attack, cached per (run, attack, parameters, ε, sample set, seed); sweeps over an ε
grid as background work; the sanity checks of attacks.md that reveal gradient masking.

Everything works on tensors and stays on their device.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable

import torch

from .config import settings_hash


def class_moments(z: torch.Tensor, y: torch.Tensor, num_classes: int):
    """Per-class counts, means (K, D) and mean squared distance to the class mean (K,)."""
    z = z.double()
    onehot = torch.nn.functional.one_hot(y, num_classes).to(z.dtype)
    counts = onehot.sum(0)
    means = (onehot.T @ z) / counts.clamp(min=1).unsqueeze(1)
    spread = (onehot.T @ ((z - means[y]) ** 2).sum(1, keepdim=True)).squeeze(1) / counts.clamp(min=1)
    return counts, means, spread


def r_ab(z: torch.Tensor, y: torch.Tensor, num_classes: int) -> tuple[float, float]:
    """Inter/intra class distance ratio r_AB (GCCS Eq. 6), mean over ordered class pairs ± 95 % CI.

    r_AB = sqrt(mean_{i∈A, j∈B} ‖z_i − z_j‖² / mean_{i, j∈A} ‖z_i − z_j‖²), with the means over all
    n×m and n×n pairs (spec §7). In closed form, with v_A the mean squared distance to the class
    mean: intra = 2·v_A and inter = ‖μ_A − μ_B‖² + v_A + v_B, so no pairwise matrix is built.
    """
    counts, means, spread = class_moments(z, y, num_classes)
    present = torch.nonzero(counts > 0).flatten()
    if len(present) < 2:
        return float("nan"), float("nan")
    m, v = means[present], spread[present]
    inter = torch.cdist(m, m) ** 2 + v.unsqueeze(1) + v.unsqueeze(0)  # row A, column B
    intra = (2 * v).clamp(min=1e-12).unsqueeze(1)
    ratios = torch.sqrt(inter / intra)
    off = ~torch.eye(len(present), dtype=torch.bool, device=ratios.device)
    values = ratios[off]
    mean = float(values.mean())
    ci = 1.96 * float(values.std()) / math.sqrt(values.numel()) if values.numel() > 1 else 0.0
    return mean, ci


def confusion_matrix(pred: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    return torch.bincount(y * num_classes + pred, minlength=num_classes**2).view(num_classes, num_classes)


def macro_f1(pred: torch.Tensor, y: torch.Tensor, num_classes: int) -> float:
    """Macro-averaged F-score from the confusion matrix (classes absent from both count as 0)."""
    cm = confusion_matrix(pred, y, num_classes).double()
    tp = cm.diagonal()
    denominator = cm.sum(0) + cm.sum(1)
    f1 = torch.where(denominator > 0, 2 * tp / denominator.clamp(min=1), torch.zeros_like(tp))
    present = (cm.sum(1) > 0) | (cm.sum(0) > 0)
    return float(f1[present].mean())


def class_kurtosis(z: torch.Tensor, y: torch.Tensor, num_classes: int) -> list[float]:
    """Per-class kurtosis m4/m2² averaged over latent components (3 for a Gaussian); NaN if n < 2."""
    z = z.double()
    counts, means, _ = class_moments(z, y, num_classes)
    onehot = torch.nn.functional.one_hot(y, num_classes).to(z.dtype)
    sq = (z - means[y]) ** 2
    m2 = (onehot.T @ sq) / counts.clamp(min=1).unsqueeze(1)
    m4 = (onehot.T @ sq**2) / counts.clamp(min=1).unsqueeze(1)
    kurt = (m4 / m2.clamp(min=1e-12) ** 2).mean(1)
    return [float(k) if n >= 2 else float("nan") for k, n in zip(kurt, counts)]


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


def sanity_warnings(eps: list[float], accuracy: list[float], attack: str | None = None) -> list[str]:
    """Signs of gradient masking that one sweep can show (attacks.md, after Carlini et al. 2019).

    ``attack``: the registry name; natural corruptions (noise, rotation) are not attacks that should
    win at large budgets and get no warning, and "should reach ~0" applies to ℓ∞ budgets only."""
    from .attacks import ATTACKS

    spec = ATTACKS.get(attack) if attack else None
    if spec is not None and spec.family == "natural":
        return []
    out = []
    order = sorted(range(len(eps)), key=lambda i: eps[i])
    for a, b in zip(order, order[1:]):
        if accuracy[b] > accuracy[a] + 0.01:
            out.append(f"accuracy rises from {accuracy[a]:.3f} at ε = {eps[a]:g} to {accuracy[b]:.3f} at "
                       f"ε = {eps[b]:g}: a stronger attack should never do worse (gradient masking?)")
    big = order[-1]
    if (spec is None or spec.budget == "linf") and eps[big] >= 0.3 and accuracy[big] > 0.1:
        out.append(f"accuracy is still {accuracy[big]:.3f} at ε = {eps[big]:g}: at such ε an attack should reach "
                   "~0 (gradient masking, or too few steps?)")
    return out


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


def cross_attack_warnings(results: list[dict[str, Any]]) -> list[tuple[str, int, str]]:
    """The sanity checks of attacks.md that compare attacks on one run (Carlini et al. 2019), from its
    cached accuracy results; only results on the same samples, seed and ε are compared:
    an untargeted iterative attack weaker than FGSM; a gradient-free attack stronger than the white-box ones;
    the adaptive attack much (> 0.10) stronger than the standard attack it is paired with.
    Returns (attack whose chart the warning belongs to, samples, message) triples.
    """
    from .attacks import ATTACKS

    out = []
    groups: dict[tuple, dict[str, float]] = {}
    for r in results:
        if r.get("kind") != "accuracy" or r["eps"] == 0 or r["attack"] not in ATTACKS:
            continue
        group = groups.setdefault((r["eps"], r["samples"], r["seed"]), {})
        # several parameter sets of one attack: keep the strongest (lowest accuracy)
        group[r["attack"]] = min(group.get(r["attack"], 1.0), r["accuracy"])
    for (eps, samples, _), acc in sorted(groups.items()):
        where = f"at ε = {eps:g} ({samples} samples)"
        linf = {a: v for a, v in acc.items() if ATTACKS[a].budget == "linf"}
        white = {a: v for a, v in linf.items() if ATTACKS[a].family == "white-box"}
        if "fgsm" in white:
            for a, v in white.items():
                # a targeted attack (TGSM) only has to reach one class: it may honestly do less than FGSM
                if ATTACKS[a].iterative and ATTACKS[a].target == "none" and v > acc["fgsm"] + 0.02:
                    out.append((a, samples, f"{a} ({v:.3f}) is weaker than one-step FGSM ({acc['fgsm']:.3f}) {where}: an "
                                   "iterative attack should not do worse (gradient masking, or a too small step?)"))
        if white:
            strongest = min(white, key=white.get)
            for a, v in linf.items():
                if ATTACKS[a].family == "gradient-free" and v < white[strongest] - 0.02:
                    out.append((a, samples, f"gradient-free {a} ({v:.3f}) is stronger than the best white-box attack "
                                   f"{strongest} ({white[strongest]:.3f}) {where}: the gradients are masked"))
        for a, v in acc.items():
            partner = ATTACKS[a].pairs_with
            if partner in acc and acc[partner] - v > 0.10:
                out.append((partner, samples, f"adaptive {a} ({v:.3f}) is much stronger than standard {partner} "
                                     f"({acc[partner]:.3f}) {where}: the standard attack overstates the robustness"))
    return out


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


# --- measures as background work (engine.measures) --------------------------------------------------
MEASURES = {
    "deepfool": "DeepFool ρ = mean ‖r̂‖₂/‖x‖₂ and success rate (GCCS Table 6, I-SCE Fig. 8)",
    "cw": "C&W ℓ2 with a binary search over c: mean ℓ2 of the successful examples and success rate (MMC Table 2)",
    "spsa-grid": "SPSA accuracy over iterations × perturbation samples at one ε (GCCS Table 7, MMC Table 3)",
    "transfer": "transfer: examples crafted on each substitute run, classified by every run (MMC Fig. 4)",
}


def measure_settings(measure: str, settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` of ``measure_job`` validated, with the defaults filled in (so that equal settings share
    a cache key): deepfool / cw {"params"}; spsa-grid {"eps" (0.02), "iterations", "spsa_samples",
    "params"}; transfer {"attack" (pgd), "eps" (0.1), "params"}. Bad input raises ConfigError."""
    from .attacks import attack_params
    from .objectives import ConfigError

    if measure not in MEASURES:
        raise ConfigError(f"measure must be one of {', '.join(MEASURES)}; got {measure!r}")
    settings = dict(settings)
    if measure in ("deepfool", "cw"):
        settings["params"] = attack_params(measure, settings.get("params") or {})
    elif measure == "spsa-grid":
        settings["eps"] = validate_eps("spsa", [settings.get("eps", 0.02)])[0]
        for axis, name in (("iterations", "iterations"), ("spsa_samples", "samples")):
            values = settings.get(axis) or []
            if not values:
                raise ConfigError(f"spsa grid: {axis} needs at least one value")
            settings[axis] = [attack_params("spsa", {name: v})[name] for v in values]
        settings["params"] = {k: v for k, v in attack_params("spsa", settings.get("params") or {}).items()
                              if k not in ("iterations", "samples")}
    else:
        settings["params"] = attack_params(settings.get("attack", "pgd"), settings.get("params") or {})
        settings["attack"] = settings.get("attack", "pgd")
        settings["eps"] = validate_eps(settings["attack"], [settings.get("eps", 0.1)])[0]
    return settings


def measure_job(store, run_ids: list[str], measure: str, settings: dict[str, Any], samples: int | None = 100,
                seed: int = 0, force: bool = False, device="cpu", data_dir=None,
                on_event: Callable[[dict], None] | None = None, cancel=None) -> dict[str, Any]:
    """One measure of ``engine.measures`` for each run (for ``transfer``: one row per substitute run,
    classified by every chosen run), each cached at once under the run as kind ``measure``.

    ``settings``: deepfool / cw: {"params": the attack's parameters}; spsa-grid: {"eps", "iterations",
    "spsa_samples", "params"}; transfer: {"attack", "eps", "params"}. Events as ``sweep_job``.
    """
    from . import measures
    from .objectives import ConfigError

    if measure not in MEASURES:
        raise ConfigError(f"measure must be one of {', '.join(MEASURES)}; got {measure!r}")
    emit = on_event or (lambda event: None)
    loaded, x, y = load_for_evaluation(store, run_ids, samples, device, data_dir)
    emit({"type": "sweep-start", "runs": [{"run_id": r, "objective": loaded[r][2]["objective"]} for r in run_ids],
          "points": len(run_ids), "class_names": loaded[run_ids[0]][2]["class_names"]})
    targets = list(run_ids) if measure == "transfer" else None
    points = []
    for index, run_id in enumerate(run_ids):
        key_settings = {"settings": settings, "samples": len(y), "seed": seed, "targets": targets}
        key = result_key(run_id, measure, key_settings)
        result = None if force else store.get_result(key)
        cached = isinstance(result, dict)

        def progress(done: int, total: int, base=index) -> None:
            emit({"type": "sweep-progress", "done": base * total + done, "total": total * len(run_ids), "eta": None})

        if not cached:
            model, objective, _ = loaded[run_id]
            common = dict(cancel=cancel, progress=progress, seed=seed)
            try:
                if measure == "deepfool":
                    result = measures.deepfool_rho(model, objective, x, y, settings.get("params"), **common)
                elif measure == "cw":
                    result = measures.cw_l2(model, objective, x, y, settings.get("params"), **common)
                elif measure == "spsa-grid":
                    result = measures.spsa_grid(model, objective, x, y, settings["eps"], settings["iterations"],
                                                settings["spsa_samples"], settings.get("params"), **common)
                else:
                    result = measures.transfer_matrix({r: loaded[r][:2] for r in run_ids}, x, y, settings["attack"],
                                                      settings["eps"], settings.get("params"), sources=[run_id],
                                                      targets=targets, **common)
            except InterruptedError:
                from .train import Cancelled
                raise Cancelled("cancelled by the user") from None
            result = {**result, "kind": measure, "run_id": run_id, "settings": settings, "created": time.time()}
            store.put_result(key, result)
        points.append(result)
        emit({"type": "point", "result": result, "cached": cached})
    return {"points": points}


def measure_tables(store, run_ids: list[str], measure: str, records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The cached results of one measure for the chosen runs, as the Robustness page shows them:
    {"rows": one row per (run, settings) for deepfool / cw; "grids": per run the SPSA table;
    "matrices": per transfer setting the substitute × target matrix}. Never computes."""
    def name(run_id):
        return f"{records[run_id]['objective'].upper()} ({run_id[:6]})"

    def params_text(params):
        return ", ".join(f"{k}={v}" for k, v in sorted((params or {}).items()))

    results = [r for run_id in run_ids for r in store.list_results(run_id, measure)]
    out: dict[str, Any] = {"rows": [], "grids": [], "matrices": []}
    if measure in ("deepfool", "cw"):
        for r in results:
            row = {"run": name(r["run_id"]), "parameters": params_text(r["params"]), "samples": r["samples"],
                   "seed": r["seed"], "clean accuracy": round(r["clean_accuracy"], 4),
                   "success rate": round(r["success_rate"], 4), "accuracy after": round(r["accuracy"], 4)}
            if measure == "deepfool":
                row |= {"ρ (mean ‖r̂‖₂/‖x‖₂)": r["rho"], "median ρ": r["median_rho"]}
            else:
                row |= {"mean ℓ2": r["mean_l2"], "median ℓ2": r["median_l2"]}
            out["rows"].append(row | {"seconds": round(r["seconds"], 1)})
    elif measure == "spsa-grid":
        for r in results:
            out["grids"].append({"run": name(r["run_id"]), "title": f"ε = {r['eps']:g} · {params_text(r['params'])} · "
                                                                    f"{r['samples']} samples · seed {r['seed']}",
                                 "rows": [{"iterations": it, **{f"BS {s}": acc for s, acc in zip(r["spsa_samples"], row)}}
                                          for it, row in zip(r["iterations"], r["accuracy"])]})
    else:
        groups: dict[str, dict[str, Any]] = {}
        for r in results:
            if set(r["targets"]) - set(records):
                continue  # a target run was deleted since
            signature = settings_hash({"s": r["settings"], "n": r["samples"], "seed": r["seed"], "t": r["targets"]})
            group = groups.setdefault(signature, {
                "title": f"{r['attack']} at ε = {r['eps']:g} ({params_text(r['params'])}) · {r['samples']} samples",
                "targets": [name(t) for t in r["targets"]], "rows": {}})
            group["rows"][r["run_id"]] = r["accuracy"][0]
        for group in groups.values():
            sources = [name(s) for s in group["rows"]]
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
            out["matrices"].append({"title": group["title"], "targets": group["targets"], "sources": sources,
                                    "accuracy": matrix, "warnings": warnings})
    return out
