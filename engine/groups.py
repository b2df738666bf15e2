"""Several seeds: runs grouped by their settings, mean ± 95 % CI per group, paired verdicts between groups.

The spec (shared/spec/attacks.md, "Seeds"): a comparison of objectives uses ≥ 3 seeds, reports
mean ± 95 % CI (Student t) per metric, and a paired difference per seed with its CI; a CI that
contains 0 is reported as "within noise".

Read top to bottom:
    parse_seeds        "0,1,2" -> [0, 1, 2], or a ConfigError naming the field
    mean_ci            mean and t-interval half-width of a list of numbers
    paired_difference  the per-seed difference of two metrics and its verdict
    seed_groups        stored run records grouped so that a group's runs differ only by seed
    comparisons        every objective's group against the baseline's (CE) of the same setting
    add_worst_case     each group's cached worst-case robust accuracy per ε, over its seeds
    seed_summary, summary_rows, comparison_rows   the tables the Start and Train pages show

Missing values. A metric may be None or NaN for a run (e.g. a robust accuracy not computed yet).
``mean_ci`` then refuses to average the rest: mean and ci95 are None, ``n`` counts the finite values
and ``missing`` the others, because a mean over a silent subset of the seeds would not be the
mean over the seeds the row claims. ``paired_difference`` drops a seed unless both sides have a
finite value there (pairing is per seed, so this keeps the comparison paired) and lists the seeds used.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable

from scipy import stats

from .config import settings_hash
from .objectives import OBJECTIVES, ConfigError
from .report import NOT_EVALUATED, worst_case_of

# The per-run metrics a stored record carries, and where: record["final"][...]
RECORD_METRICS = {"clean_accuracy": "test_acc", "macro_f1": "test_f1", "r_ab": "r_ab"}
METRICS = tuple(RECORD_METRICS)
METRIC_LABELS = {"clean_accuracy": "clean accuracy", "macro_f1": "macro F1", "r_ab": "r_AB"}

HIGHER, LOWER, NOISE = "higher", "lower", "within noise"
ONE_SEED = "one seed: no verdict"
NO_SEED = "no shared seed: no verdict"

MAX_SEED = 2**31 - 1  # as engine.config.validate allows

MetricOf = Callable[[str, str], "float | None"]


# --- parsing ---------------------------------------------------------------------------------------
def parse_seeds(text: str, field: str = "--seeds") -> list[int]:
    """Comma-separated distinct seeds in [0, 2³¹ − 1], e.g. "0,1,2"; a ConfigError names ``field``."""
    allowed = f"comma-separated distinct integers from 0 to {MAX_SEED}, e.g. 0,1,2"
    parts = [p.strip() for p in str(text).split(",")]
    seeds: list[int] = []
    for part in parts:
        try:
            seed = int(part)
        except ValueError:
            raise ConfigError(f"{field} must be {allowed}; got {text!r}") from None
        if not 0 <= seed <= MAX_SEED:
            raise ConfigError(f"{field} must be {allowed}; got {text!r} ({seed} is out of range)")
        if seed in seeds:
            raise ConfigError(f"{field} must be {allowed}; got {text!r} ({seed} appears twice)")
        seeds.append(seed)
    return seeds


# --- statistics ------------------------------------------------------------------------------------
def _finite(value: Any) -> bool:
    return value is not None and not isinstance(value, bool) and math.isfinite(float(value))


def mean_ci(values: Iterable[float | None]) -> dict[str, Any]:
    """Mean and half-width of the 95 % Student-t interval: t.ppf(0.975, n − 1) · sd / √n (sd with n − 1).

    Returns ``{"mean", "ci95", "n", "missing"}``. ``ci95`` is None when n < 2 (no spread to estimate).
    Any None / NaN / ±inf value makes mean and ci95 None; ``n`` then counts the finite values and
    ``missing`` the others (see the module docstring)."""
    values = list(values)
    finite = [float(v) for v in values if _finite(v)]
    n, missing = len(finite), len(values) - len(finite)
    if missing or n == 0:
        return {"mean": None, "ci95": None, "n": n, "missing": missing}
    mean = sum(finite) / n
    if n < 2:
        return {"mean": mean, "ci95": None, "n": n, "missing": 0}
    sd = math.sqrt(sum((v - mean) ** 2 for v in finite) / (n - 1))
    return {"mean": mean, "ci95": float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n), "n": n, "missing": 0}


def verdict_of(mean: float | None, ci95: float | None, n: int) -> str:
    """"higher" / "lower" when the interval mean ± ci95 lies entirely above / below 0, "within noise"
    when it contains 0 (an interval that touches 0 contains it); fewer than 2 seeds give no verdict."""
    if n == 0 or mean is None:
        return NO_SEED
    if n < 2 or ci95 is None:
        return ONE_SEED
    if mean - ci95 > 0:
        return HIGHER
    if mean + ci95 < 0:
        return LOWER
    return NOISE


def paired_difference(a: dict[int, float | None], b: dict[int, float | None]) -> dict[str, Any]:
    """a − b seed by seed over the seeds where both have a finite value, mean and 95 % t interval.

    Returns ``{"seeds", "mean_difference", "ci95", "verdict"}``; the verdict is one of HIGHER, LOWER,
    NOISE ("within noise"), ONE_SEED ("one seed: no verdict": the difference of that seed is still
    reported as mean_difference, with ci95 None) or NO_SEED."""
    seeds = sorted(s for s in set(a) & set(b) if _finite(a[s]) and _finite(b[s]))
    summary = mean_ci([float(a[s]) - float(b[s]) for s in seeds])
    return {"seeds": seeds, "mean_difference": summary["mean"], "ci95": summary["ci95"],
            "verdict": verdict_of(summary["mean"], summary["ci95"], len(seeds))}


# --- grouping stored runs --------------------------------------------------------------------------
def record_metric(record: dict[str, Any], metric: str) -> float | None:
    """One of METRICS from a stored run record (None when the record lacks it)."""
    value = record.get("final", {}).get(RECORD_METRICS[metric])
    return None if value is None else float(value)


def _without(settings: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in settings.items() if k not in keys}


def group_key(record: dict[str, Any]) -> str:
    """The hash of every setting but the seed: runs with equal keys differ only by their seed."""
    return settings_hash(_without(record["settings"], "seed"))


def setting_key(record: dict[str, Any]) -> str:
    """The hash of every setting but the seed, the objective and its constants: the runs (of any
    objective) that a paired comparison may set side by side."""
    return settings_hash(_without(record["settings"], "seed", "objective", "params"))


def _objective_rank(name: str) -> tuple[int, str]:
    names = list(OBJECTIVES)
    return (names.index(name) if name in names else len(names), name)


def seed_groups(records: Iterable[dict[str, Any]], metric_of: MetricOf | None = None,
                extra_metrics: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Stored run records grouped so that the runs of one group differ only by their seed.

    Each group: ``{"key", "setting", "objective", "dataset", "model", "params", "run_ids", "seeds",
    "diverged_seeds", "values", "clean_accuracy", "macro_f1", "r_ab"}``, its runs ordered by seed; ``values[metric]``
    lists the per-run values in that order and each metric name maps to ``mean_ci`` of them.
    ``extra_metrics`` are asked of ``metric_of(run_id, metric)`` (a float or None per run) and added
    the same way. A record given twice counts once. Order: dataset, model, setting, then objective as
    in engine.objectives.OBJECTIVES (CE first), then key — the same for the same records in any order."""
    extra_metrics = tuple(extra_metrics)
    if extra_metrics and metric_of is None:
        raise ValueError("extra_metrics need a metric_of(run_id, metric) to compute them")
    by_key: dict[str, dict[str, dict[str, Any]]] = {}
    for record in records:
        by_key.setdefault(group_key(record), {})[record["run_id"]] = record
    groups = []
    for key, members in by_key.items():
        runs = sorted(members.values(), key=lambda r: r["settings"]["seed"])
        first = runs[0]
        run_ids = [r["run_id"] for r in runs]
        values = {m: [record_metric(r, m) for r in runs] for m in METRICS}
        values.update({m: [metric_of(rid, m) for rid in run_ids] for m in extra_metrics})
        groups.append({"key": key, "setting": setting_key(first), "objective": first["settings"]["objective"],
                       "dataset": first["settings"]["dataset"], "model": first["settings"]["model"],
                       "params": first["settings"]["params"], "run_ids": run_ids,
                       "seeds": [r["settings"]["seed"] for r in runs], "values": values,
                       # counted in the mean like any seed (the recipe produced them), and named
                       "diverged_seeds": [r["settings"]["seed"] for r in runs if r.get("diverged")],
                       **{m: mean_ci(v) for m, v in values.items()}})
    return sorted(groups, key=lambda g: (g["dataset"], g["model"], g["setting"], _objective_rank(g["objective"]),
                                         g["key"]))


def comparisons(groups: list[dict[str, Any]], metric_of: MetricOf | None = None, baseline: str = "ce",
                metrics: Iterable[str] = METRICS) -> list[dict[str, Any]]:
    """Every non-baseline group against each baseline group of the same setting, seed by seed.

    A metric's per-run values come from the group's ``values`` (METRICS, and extra_metrics given to
    seed_groups); any other metric is asked of ``metric_of(run_id, metric)``, which returns a float
    or None (e.g. worst-case robust accuracy at one ε). Rows: ``{"objective", "baseline", "metric",
    "seeds", "mean_difference", "ci95", "verdict", "run_ids", "baseline_run_ids"}`` where
    mean_difference is objective − baseline and run_ids / baseline_run_ids are the runs of those seeds."""
    metrics = tuple(metrics)

    def per_seed(group: dict[str, Any], metric: str) -> dict[int, float | None]:
        if metric in group["values"]:
            values = group["values"][metric]
        elif metric_of is not None:
            values = [metric_of(rid, metric) for rid in group["run_ids"]]
        else:
            raise ValueError(f"metric {metric!r} is not in the groups; pass metric_of(run_id, metric) to compute it")
        return dict(zip(group["seeds"], values))

    rows = []
    for group in groups:
        if group["objective"] == baseline:
            continue
        for base in (g for g in groups if g["objective"] == baseline and g["setting"] == group["setting"]):
            run_of = dict(zip(group["seeds"], group["run_ids"]))
            base_run_of = dict(zip(base["seeds"], base["run_ids"]))
            for metric in metrics:
                diff = paired_difference(per_seed(group, metric), per_seed(base, metric))
                rows.append({"objective": group["objective"], "baseline": baseline, "metric": metric, **diff,
                             "run_ids": [run_of[s] for s in diff["seeds"]],
                             "baseline_run_ids": [base_run_of[s] for s in diff["seeds"]]})
    return rows


# --- the worst case over the seeds -----------------------------------------------------------------
def worst_case_metric(eps: float) -> str:
    """The metric name of the worst-case robust accuracy at ε (``worst case @ ε 0.1``), as tables show it."""
    return f"worst case @ ε {eps:g}"


def add_worst_case(groups: list[dict[str, Any]], store) -> None:
    """Add to every group the worst-case robust accuracy per ε over its seeds, read from the cache
    (``engine.report.worst_case_of``; nothing is attacked): ``group["worst_case"] = {"eps" (the ε
    with a mean), "samples" (None unless every seed has a worst case on the same test samples),
    "missing" (runs with no cached worst case), "source" (one line)}``, and for each of those ε,
    ``values[worst_case_metric(ε)]`` and its ``mean_ci`` under the same name, so that
    ``comparisons`` pairs them seed by seed like any other metric.

    An ε counts only when every run of the group has a worst case there, all on the same test
    samples: a mean over some of the seeds, or over different test images per seed, is not the
    mean over the seeds the row claims (see the module docstring)."""
    for group in groups:
        heads = [worst_case_of(store, run_id) for run_id in group["run_ids"]]
        missing = [rid for rid, head in zip(group["run_ids"], heads) if head is None]
        samples = {head["samples"] for head in heads if head is not None}
        comparable = not missing and len(samples) == 1
        eps = sorted(set.intersection(*(set(head["eps"]) for head in heads))) if comparable else []
        for e in eps:
            metric = worst_case_metric(e)
            group["values"][metric] = [head["eps"][e] for head in heads]
            group[metric] = mean_ci(group["values"][metric])
        group["worst_case"] = {"eps": eps, "samples": samples.pop() if comparable else None, "missing": missing,
                               "source": _worst_case_source(group["seeds"], heads, eps)}


def _worst_case_source(seeds: list[int], heads: list[dict[str, Any] | None], eps: list[float]) -> str:
    """What a group's worst case is over, or why it has no mean (``add_worst_case``), in one line."""
    unevaluated = [seed for seed, head in zip(seeds, heads) if head is None]
    found = [head for head in heads if head is not None]
    if not found:
        return NOT_EVALUATED
    if unevaluated:
        return (f"not evaluated for seed{'s' * (len(unevaluated) > 1)} {', '.join(map(str, unevaluated))}: "
                + NOT_EVALUATED.removeprefix("not evaluated: "))
    samples = sorted({head["samples"] for head in found})
    if len(samples) > 1:
        return (f"different test samples per seed ({', '.join(map(str, samples))} images): no mean; "
                "evaluate every seed on the same samples")
    # fewer attack settings overstate robustness, so say how many each seed's worst case is over
    counts = sorted({head["settings"] for head in found})
    over = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
    attack_seeds = sorted({head["seed"] for head in found})
    source = (f"worst case over {over} attack setting{'s' * (over != '1')} per seed; first {samples[0]} test images; "
              f"attack seed{'s' * (len(attack_seeds) > 1)} {', '.join(map(str, attack_seeds))}")
    return source if eps else "no ε evaluated for every seed: " + source


def worst_case_comparisons(groups: list[dict[str, Any]], baseline: str = "ce") -> list[dict[str, Any]]:
    """``comparisons`` of the worst case at each ε that a group and its baseline group (of the same
    setting) both have a mean at, on the same test samples (groups from ``add_worst_case``)."""
    rows = []
    for group in groups:
        if group["objective"] == baseline:
            continue
        for base in (g for g in groups if g["objective"] == baseline and g["setting"] == group["setting"]):
            ours, theirs = group["worst_case"], base["worst_case"]
            if ours["samples"] is None or ours["samples"] != theirs["samples"]:
                continue  # seed by seed on other test images would not be a paired difference
            shared = [worst_case_metric(e) for e in ours["eps"] if e in theirs["eps"]]
            rows += comparisons([base, group], baseline=baseline, metrics=shared)
    return rows


# --- the tables the pages show ---------------------------------------------------------------------
def format_mean_ci(summary: dict[str, Any], digits: int = 4) -> str:
    """"0.9712 ± 0.0051" (n ≥ 2), "0.9712 (one seed)", or "n/a (2 of 3 missing)"."""
    if summary["mean"] is None:
        missing = summary.get("missing", 0)
        return f"n/a ({missing} of {missing + summary['n']} missing)" if missing else "n/a"
    if summary["ci95"] is None:
        return f"{summary['mean']:.{digits}f} (one seed)"
    return f"{summary['mean']:.{digits}f} ± {summary['ci95']:.{digits}f}"


def summary_rows(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per group: objective, seeds, mean ± 95 % CI of clean accuracy, of the worst case at
    every ε any group has one (groups from ``add_worst_case``; "not evaluated" where some seed lacks
    it) and what it is over, then macro F1 and r_AB."""
    grid = sorted({e for g in groups for e in g.get("worst_case", {}).get("eps", [])})
    rows = []
    for g in groups:
        cells = {f"{METRIC_LABELS[m]} (mean ± 95% CI)": format_mean_ci(g[m], 2 if m == "r_ab" else 4) for m in METRICS}
        row = {"objective": g["objective"].upper(), "seeds": ", ".join(map(str, g["seeds"])), "n": len(g["seeds"])}
        row["clean accuracy (mean ± 95% CI)"] = cells.pop("clean accuracy (mean ± 95% CI)")
        if "worst_case" in g:  # the headline robust accuracy, next to the clean one
            mixed = g["worst_case"]["samples"] is None and not g["worst_case"]["missing"]
            for e in grid:
                metric = worst_case_metric(e)
                row[f"{metric} (mean ± 95% CI)"] = (format_mean_ci(g[metric]) if e in g["worst_case"]["eps"] else
                                                    "n/a: different test samples" if mixed else "not evaluated")
            row["worst case evaluated on"] = g["worst_case"]["source"]
        rows.append({**row, **cells})
    return rows


def comparison_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The paired verdicts as a table: "GCCS − CE", metric, seeds, difference ± CI, verdict."""
    out = []
    for r in rows:
        digits = 2 if r["metric"] == "r_ab" else 4
        diff = {"mean": r["mean_difference"], "ci95": r["ci95"], "n": len(r["seeds"])}
        out.append({"comparison": f"{r['objective'].upper()} − {r['baseline'].upper()}",
                    "metric": METRIC_LABELS.get(r["metric"], r["metric"]),
                    "seeds": ", ".join(map(str, r["seeds"])),
                    "difference (mean ± 95% CI)": "n/a" if diff["mean"] is None else format_mean_ci(diff, digits),
                    "verdict": r["verdict"]})
    return out


def seed_summary(records: Iterable[dict[str, Any]], baseline: str = "ce", store=None) -> dict[str, Any]:
    """What the Start and Train pages show for the runs of several seeds: ``{"groups": summary_rows,
    "comparisons": comparison_rows}`` (comparisons empty unless the baseline and another objective
    are among the runs). With ``store``, the groups add the cached worst case per ε and the
    comparisons its paired verdicts (``add_worst_case``, ``worst_case_comparisons``)."""
    groups = seed_groups(records)
    rows = comparisons(groups, baseline=baseline)
    if store is not None:
        add_worst_case(groups, store)
        rows += worst_case_comparisons(groups, baseline)
    return {"groups": summary_rows(groups), "comparisons": comparison_rows(rows)}
