"""Sweeps and named suites as background work: one attack over an ε grid on several runs
(``sweep_job``), a named set of attacks with its per-sample worst case (``suite_job``), and the
Robustness page's charts as data (``robustness_charts``).

The headline of every suite is its worst case (``engine.robustness.worst_case_point``): the share
of test samples that no attack of the suite breaks. An attack's own curve is an upper bound on it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from cache.points import result_key

from .robustness import (accuracy_point, accuracy_settings, cached_worst_case, load_for_evaluation, member_label,
                         store_accuracy, validate_batch, worst_case_point)
from .report import derive_listing_values
from .sanity import cross_attack_warnings, sanity_warnings, worst_case_warnings

Event = Callable[[dict], None] | None


def _cancelled():
    from .train import Cancelled

    return Cancelled("cancelled by the user")


def sweep_job(store, run_ids: list[str], attack: str, params: dict[str, Any], eps: list[float],
              samples: int | None = None, seed: int = 0, force: bool = False, device="cpu", data_dir=None,
              on_event: Event = None, cancel=None, batch_size: int | None = None) -> dict[str, Any]:
    """Accuracy of several runs under one attack alone over an ε grid, point by point.

    The grid is walked ε by ε with every run at each ε, so all curves advance together; each point is
    read from the store when cached, else computed and stored at once (a cancelled sweep keeps the
    points it finished). Events for ``on_event``: ``sweep-start`` (runs, points), ``sweep-progress``
    (done/total test samples attacked, ETA), ``point`` (one result dict, cached or not).
    Returns {"points": [...], "warnings": {run_id: [...]}}.
    """
    from .attacks import attack_params

    emit = on_event or (lambda event: None)
    params = attack_params(attack, params)
    validate_batch(batch_size)
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
                emit({"type": "sweep-progress", "done": base + min(n, len(y)), "total": total,
                      "eta": (total - base - n) / rate if rate > 0 else None})

            try:
                result, cached = accuracy_point(store, run_id, model, objective, x, y, attack, params, e, seed,
                                                force, cancel, progress, batch_size)
            except InterruptedError:
                raise _cancelled() from None
            done += len(y)
            computed += 0 if cached else len(y)
            points.append(result)
            emit({"type": "point", "result": result, "cached": cached})
            emit({"type": "sweep-progress", "done": done, "total": total, "eta": None if done < total else 0.0})
    warnings = {}
    for run_id in run_ids:
        own = [p for p in points if p["run_id"] == run_id]
        warnings[run_id] = sanity_warnings([p["eps"] for p in own], [p["accuracy"] for p in own], attack)
    derive_listing_values(store, run_ids)
    return {"points": points, "warnings": warnings}


# --- named suites (python -m engine evaluate) -------------------------------------------------------
@dataclass(frozen=True)
class Suite:
    """A named set of attacks. ``members``: (attack, parameters, default ε grid) in the order they run.
    ``cascade``: the members run on the samples the earlier ones left unbroken (AutoAttack's scheme),
    except those named in ``alone``, which run on every clean-correct sample so that their own curve
    (an upper bound) is known too. Without ``cascade`` every member runs alone."""
    description: str
    members: tuple[tuple[str, dict[str, Any], tuple[float, ...]], ...]
    cascade: bool = False
    alone: tuple[str, ...] = field(default=())


GCCS_EPS = (0.0, 0.025, 0.05, 0.075, 0.1)  # GCCS Fig. 4 (MNIST): 0 … 0.10
ROBUST_EPS = (0.0, 0.05, 0.1, 0.2, 0.3)
# AutoAttack runs alone on every clean-correct sample, so the worst case is never above it; APGD runs the
# paper's 100 iterations, not torchattacks' default 10, with which APGD-T and APGD-DLR leave standing
# samples that longer runs break. The cascade members add random restarts where AutoAttack has one.
SUITES: dict[str, Suite] = {
    "robust": Suite(
        "the headline: per-sample worst case over AutoAttack (standard: APGD-CE, APGD-T, FAB-T, Square-5000 at the "
        "paper's 100 iterations), PGD-50 on the objective's adaptive objective and margin PGD-50 (2 restarts each) "
        "and APGD-CE alone, then on the samples still standing APGD-DLR (3 restarts) and APGD-T",
        (("autoattack", {"steps": 100, "queries": 5000}, ROBUST_EPS),
         ("adaptive-pgd", {"steps": 50, "restarts": 2}, ROBUST_EPS),
         ("margin-pgd", {"steps": 50, "restarts": 2}, ROBUST_EPS),
         ("apgd-ce", {"steps": 100}, ROBUST_EPS),
         ("apgd-dlr", {"steps": 100, "restarts": 3}, ROBUST_EPS),
         ("apgd-t", {"steps": 100}, ROBUST_EPS)),
        cascade=True, alone=("autoattack", "adaptive-pgd", "margin-pgd", "apgd-ce")),
    "pgd10": Suite("PGD-10 (step 2.5·ε/10) over five ε: one attack, an upper bound", (("pgd", {"steps": 10}, GCCS_EPS),)),
    "gccs-paper": Suite("GCCS Fig. 4: FGSM, PGD-5, TGSM-5 over ε 0 … 0.1",
                        (("fgsm", {}, GCCS_EPS), ("pgd", {"steps": 5}, GCCS_EPS), ("tgsm", {"steps": 5}, GCCS_EPS))),
    "adaptive": Suite("PGD-10 on CE, on the objective's adaptive objective and on the margin, paired (attacks.md)",
                      (("pgd", {"steps": 10}, GCCS_EPS), ("adaptive-pgd", {"steps": 10}, GCCS_EPS),
                       ("margin-pgd", {"steps": 10}, GCCS_EPS))),
    "masking": Suite("the gradient-masking checks: FGSM vs PGD-10 vs gradient-free Square up to ε 0.3",
                     (("fgsm", {}, (0.0, 0.1, 0.2, 0.3)), ("pgd", {"steps": 10}, (0.0, 0.1, 0.2, 0.3)),
                      ("square", {}, (0.0, 0.1, 0.2, 0.3)))),
    "natural": Suite("MMC's natural corruptions: Gaussian noise σ and rotation (not attacks: no worst case)",
                     (("gaussian-noise", {}, (0.0, 0.05, 0.1, 0.2, 0.3)), ("rotation", {}, (0.0, 10.0, 20.0, 30.0)))),
}
DEFAULT_SUITE = "robust"


def suite_plan(suite: str, eps=None) -> list[tuple[str, dict[str, Any], list[float]]]:
    """The validated members of a suite: (attack, parameters, ε grid), with ``eps`` (a list or
    "0,0.1") replacing every member's default grid."""
    from .attacks import attack_params
    from .objectives import ConfigError
    from .robustness import validate_eps

    if suite not in SUITES:
        raise ConfigError(f"suite must be one of {', '.join(SUITES)}; got {suite!r}")
    return [(attack, attack_params(attack, params), validate_eps(attack, grid if eps is None else eps))
            for attack, params, grid in SUITES[suite].members]


def suite_job(store, run_ids: list[str], suite: str, samples: int | None = None, seed: int = 0,
              force: bool = False, device="cpu", data_dir=None, on_event: Event = None, cancel=None,
              eps=None, batch_size: int | None = None) -> dict[str, Any]:
    """Every attack of a named suite on the same runs, and their per-sample worst case.

    Returns {"suite", "description", "attacks": [{"attack", "params", "alone", "curves": {run: {"eps",
    "accuracy"}}}], "worst_case": {run: {"eps", "accuracy", "broken_by": {attack: [share per ε]}}},
    "warnings": [...]}. An attack's curve is its accuracy alone (an upper bound), given for the members
    that ran on every clean-correct sample; a cascade member's work shows in ``broken_by``.
    Events: those of ``sweep_job`` (``point`` for every member's accuracy alone) and ``worst-case``
    (one run at one ε).
    """
    from .attacks import ATTACKS

    emit = on_event or (lambda event: None)
    spec = SUITES.get(suite)
    plan = suite_plan(suite, eps)
    validate_batch(batch_size)
    loaded, x, y = load_for_evaluation(store, run_ids, samples, device, data_dir)
    linf = [(a, p, g) for a, p, g in plan if ATTACKS[a].budget == "linf"]
    other = [(a, p, g) for a, p, g in plan if ATTACKS[a].budget != "linf"]
    alone_names = {a for a, _, _ in plan} if not spec.cascade else set(spec.alone)
    members = [(a, p) for a, p, _ in linf]
    grid = sorted({e for _, _, g in linf for e in g})
    points = len(grid) * len(run_ids)
    emit({"type": "sweep-start", "runs": [{"run_id": r, "objective": loaded[r][2]["objective"]} for r in run_ids],
          "attack": suite, "eps": grid, "samples": len(y), "points": points,
          "class_names": loaded[run_ids[0]][2]["class_names"]})
    started, done = time.perf_counter(), 0
    worst: dict[str, dict[str, Any]] = {r: {"eps": [], "accuracy": [], "broken_by": {}} for r in run_ids}
    alone: dict[str, dict[str, dict[float, float]]] = {r: {} for r in run_ids}
    classes = loaded[run_ids[0]][1].num_classes  # one dataset, so one K for every run
    skipped = [a for a, _, _ in linf if ATTACKS[a].min_classes > classes]
    for e in grid:
        # an attack that needs more classes than the dataset has (APGD-T: 4) cannot run: said in the warnings
        present = [(a, p) for a, p, g in linf if e in g and a not in skipped]
        for run_id in run_ids:
            model, objective, _ = loaded[run_id]

            def progress(n: int, of: int, base=done, peak=[0.0]) -> None:
                # within a point, the share of its current attack; never moving back when the next starts
                peak[0] = max(peak[0], min(n / max(of, 1), 0.99))
                elapsed = time.perf_counter() - started
                emit({"type": "sweep-progress", "done": base + peak[0], "total": points,
                      "eta": elapsed / base * (points - base) if base else None})

            try:
                point = worst_case_point(store, run_id, model, objective, x, y, present, e, seed,
                                         tuple(alone_names), force, cancel, progress, batch_size)
            except InterruptedError:
                raise _cancelled() from None
            done += 1
            row = worst[run_id]
            row["eps"].append(e)
            row["accuracy"].append(point["accuracy"])
            for label, share in point["broken_by"].items():
                row["broken_by"].setdefault(label, []).append(share)
            for attack, params in present:
                label = member_label(attack, params, present)
                if label in point["alone"]:
                    alone[run_id].setdefault(label, {})[e] = point["alone"][label]
                    # the attack's accuracy alone, as `attack` and the Robustness page read it
                    result = store_accuracy(store, run_id, attack, params, e, len(y), seed, point["alone"][label])
                    emit({"type": "point", "result": result, "cached": point["computed"] == 0})
            emit({"type": "worst-case", "run_id": run_id, "eps": e, "accuracy": point["accuracy"],
                  "broken_by": point["broken_by"], "computed": point["computed"]})
            elapsed = time.perf_counter() - started
            emit({"type": "sweep-progress", "done": done, "total": points,
                  "eta": elapsed / done * (points - done)})
    out: dict[str, Any] = {"suite": suite, "description": spec.description, "samples": len(y), "seed": seed,
                           "attacks": [], "worst_case": worst if linf else {}, "warnings": []}
    out["warnings"] += [f"{a} needs at least {ATTACKS[a].min_classes} classes; this dataset has {classes}: the worst "
                        "case is over the other attacks" for a in skipped]
    for attack, params, g in linf:
        label = member_label(attack, params, members)
        entry = {"attack": attack, "params": params, "alone": attack in alone_names, "curves": {}}
        if attack in alone_names:
            entry["curves"] = {r: {"eps": sorted(alone[r].get(label, {})),
                                   "accuracy": [alone[r][label][k] for k in sorted(alone[r].get(label, {}))]}
                               for r in run_ids}
        out["attacks"].append(entry)
    for attack, params, g in other:  # natural corruptions: their own curves, no worst case
        result = sweep_job(store, run_ids, attack, params, g, samples, seed, force, device, data_dir, on_event,
                           cancel, batch_size)
        out["attacks"].append({"attack": attack, "params": params, "alone": True,
                               "curves": {r: {"eps": [p["eps"] for p in result["points"] if p["run_id"] == r],
                                              "accuracy": [p["accuracy"] for p in result["points"] if p["run_id"] == r]}
                                          for r in run_ids}})
    for run_id in run_ids:
        name = f"{loaded[run_id][2]['objective'].upper()} ({run_id[:6]})"
        if linf:
            out["warnings"] += [f"{name}: {w}" for w in worst_case_warnings(
                worst[run_id]["eps"], worst[run_id]["accuracy"], alone[run_id], loaded[run_id][2]["objective"])]
        for entry in out["attacks"]:
            if entry["curves"]:
                curve = entry["curves"][run_id]
                out["warnings"] += [f"{name} · {entry['attack']}: {w}"
                                    for w in sanity_warnings(curve["eps"], curve["accuracy"], entry["attack"])]
        own = [r for r in store.list_results(run_id, "accuracy") if r.get("samples") == len(y) and r.get("seed") == seed]
        out["warnings"] += [f"{name}: {message}" for _, _, message in cross_attack_warnings(own)]
    derive_listing_values(store, run_ids)
    out["seconds"] = time.perf_counter() - started
    return out


# --- the Robustness page's charts as data -----------------------------------------------------------
WORST_CASE = "worst case"


def robustness_charts(results: list[dict[str, Any]], records: dict[str, dict[str, Any]],
                      store=None) -> list[dict[str, Any]]:
    """The Robustness page's charts as data: one chart per attack (an adaptive attack joins the chart
    of the standard attack it is paired with) and test-sample count, one line per (run, attack,
    parameters), points sorted by ε, with the sanity warnings that concern the chart, one per run and
    finding. With ``store``, every ℓ∞ chart also gets, per run and seed, the bold worst-case line
    (``worst_case: True``): the per-sample worst case over every ℓ∞ attack cached for the run on these
    samples (``engine.robustness.cached_worst_case``); single attacks are upper bounds on it. A chart
    "worst case" with only those lines comes first, with the worst-case checks as its warnings, and
    in ``groups`` the mean ± 95 % CI per ε of the runs among them that differ only by seed
    (``_group_lines``; empty when there are none).

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
            "params": params, "seed": r["seed"], "adaptive": spec.pairs_with is not None, "worst_case": False,
            "adversarially_trained": records[r["run_id"]]["settings"].get("adv_attack", "none") != "none",
            "points": []})
        line["points"].append((r["eps"], r["accuracy"]))
    worst: dict[tuple, dict[float, dict]] = {}
    if store is not None:
        for r in unique.values():
            key = (r["run_id"], r["samples"], r["seed"])
            if key not in worst and ATTACKS[r["attack"]].budget == "linf":
                worst[key] = cached_worst_case(store, *key)
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
        if ATTACKS[chart["attack"]].budget == "linf":
            for run, seed in sorted({(l["run_id"], l["seed"]) for l in lines}):
                grid = {e for l in lines if l["run_id"] == run and l["seed"] == seed for e in l["eps"]}
                points = {e: p for e, p in worst.get((run, chart["samples"], seed), {}).items() if e in grid}
                if points:
                    chart["lines"].append(_worst_line(records[run], run, seed, points))
        out.append(chart)
    for run_id in records:
        own = [r for r in unique.values() if r["run_id"] == run_id]
        for attack, samples, message in cross_attack_warnings(own):
            for chart in out:
                if chart["attack"] == attack and chart["samples"] == samples and any(l["run_id"] == run_id for l in chart["lines"]):
                    chart["warnings"].append(f"{records[run_id]['objective'].upper()} ({run_id[:6]}): {message}")
    headline = []
    for samples in sorted({k[1] for k in worst}, reverse=True):
        lines, warnings = [], []
        for (run, n, seed), points in sorted(worst.items()):
            if n != samples or len(points) < 2:
                continue
            line = _worst_line(records[run], run, seed, points)
            lines.append(line)
            alone: dict[str, dict[float, float]] = {}
            for r in unique.values():
                if r["run_id"] == run and r["samples"] == n and r["seed"] == seed and r["eps"] in points:
                    label = r["attack"]
                    alone.setdefault(label, {})[r["eps"]] = min(alone.get(label, {}).get(r["eps"], 1.0), r["accuracy"])
            warnings += [f"{line['objective'].upper()} ({run[:6]}): {w}"
                         for w in worst_case_warnings(line["eps"], line["accuracy"], alone, line["objective"])]
        if lines:
            headline.append({"attack": WORST_CASE, "samples": samples, "title": "Worst case over every attack tried",
                             "axis": "ℓ∞ ε (pixel units, [0, 1])", "lines": lines, "warnings": warnings,
                             "shared_params": True, "groups": _group_lines(lines, records)})
    return headline + out


def filter_charts(charts: list[dict[str, Any]], runs: set[str] | None = None,
                  attacks: set[str] | None = None) -> list[dict[str, Any]]:
    """The charts of ``robustness_charts`` with only the lines of ``runs`` and, beside each run's worst
    case, the single attacks in ``attacks`` (None: all). The worst-case lines stay what they are, the
    worst case over every attack tried, whichever attacks are shown; a chart left without a single
    attack is dropped (the headline chart is kept while it has a line), a seed group only while all
    its runs are shown, and only the warnings about the runs shown."""
    out = []
    for chart in charts:
        lines = [l for l in chart["lines"] if (runs is None or l["run_id"] in runs)
                 and (l.get("worst_case") or attacks is None or l["attack"] in attacks)]
        if not lines or (chart["attack"] != WORST_CASE and all(l.get("worst_case") for l in lines)):
            continue
        shown = {l["run_id"] for l in lines}
        kept = {**chart, "lines": lines, "warnings": [w for w in chart["warnings"]
                                                      if any(f"({r[:6]})" in w.split(":", 1)[0] for r in shown)]}
        if "groups" in chart:
            kept["groups"] = [g for g in chart["groups"] if set(g["run_ids"]) <= shown]
        out.append(kept)
    return out


def _worst_line(record: dict[str, Any], run_id: str, seed: int, points: dict[float, dict]) -> dict[str, Any]:
    eps = sorted(points)
    return {"run_id": run_id, "objective": record["objective"], "attack": WORST_CASE, "params": "", "seed": seed,
            "adaptive": False, "worst_case": True,
            "adversarially_trained": record["settings"].get("adv_attack", "none") != "none",
            "eps": eps, "accuracy": [points[e]["accuracy"] for e in eps],
            "attacks": [points[e]["attacks"] for e in eps]}


def _group_lines(lines: list[dict[str, Any]], records: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The seed groups among a worst-case chart's lines: runs that differ only by their training seed
    (``engine.groups.group_key``) and were attacked with the same seed, with the mean and the 95 %
    Student-t half-width over their worst cases at each ε (``engine.groups.mean_ci``).

    Only ε where every run of the group has a worst case count, and a group needs ≥ 2 runs: a mean
    over some of the seeds would not be the mean of the seeds it names. Each group: ``{"group": True,
    "key", "objective", "run_ids", "seeds" (training seeds), "attack_seed", "adversarially_trained",
    "eps", "mean", "ci95"}``, runs ordered by seed, groups by objective then key."""
    from .groups import group_key, mean_ci

    members: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for line in lines:
        members.setdefault((group_key(records[line["run_id"]]), line["seed"]), []).append(line)
    groups = []
    for (key, attack_seed), group in members.items():
        group.sort(key=lambda l: records[l["run_id"]]["settings"]["seed"])
        eps = sorted(set.intersection(*(set(l["eps"]) for l in group)))
        if len(group) < 2 or not eps:
            continue
        at = [mean_ci(l["accuracy"][l["eps"].index(e)] for l in group) for e in eps]
        groups.append({"group": True, "key": key, "objective": group[0]["objective"],
                       "run_ids": [l["run_id"] for l in group],
                       "seeds": [records[l["run_id"]]["settings"]["seed"] for l in group], "attack_seed": attack_seed,
                       "adversarially_trained": group[0]["adversarially_trained"], "eps": eps,
                       "mean": [p["mean"] for p in at], "ci95": [p["ci95"] for p in at]})
    return sorted(groups, key=lambda g: (g["objective"], g["key"], g["attack_seed"]))
