"""The runs table as data: one row per stored run, with its robust accuracy looked up from the cache.

Rows are flat dicts of plain values (str, int, float, None), so the Runs page can show them and
``export_rows`` can write them as CSV or JSON unchanged. Nothing here trains or attacks: robust
accuracy comes only from results already cached in the store, and is None where none is cached.

The robust accuracy a row headlines is the per-sample worst case over every ℓ∞ attack cached for the
run (``worst_case_of``, from ``engine.robustness.cached_worst_case``): one attack's accuracy alone is
only an upper bound on it (../shared/spec/attacks.md, "The headline is a per-sample worst case"), so
it is shown only on request, beside the worst case, under a name that says so (``alone_acc``).

Training-time overhead follows GCCS Table 8: a run's training time relative to the CE run of the
same setting (every setting equal except the objective and its constants, trained on the same
device), in percent. Runs trained in one job (in lockstep) compare best: they shared the machine.
"""
from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

from .objectives import ConfigError

EXPORT_FORMATS = ("csv", "json")
# The worst case at ε is the row key WORST_CASE_PREFIX + f"{ε:g}" (one column per ε cached for any run).
WORST_CASE_PREFIX = "worst_case@"
NOT_EVALUATED = ("not evaluated: run the robust suite (Robustness page or "
                 "`python -m engine evaluate RUN --suite robust`)")
# The settings that distinguish runs of one setting from each other: which objective, with which constants.
OBJECTIVE_KEYS = ("objective", "params")


def compact(values: dict[str, Any]) -> str:
    """``{"mu_t": 70.0, "lam": 0.2}`` -> ``"mu_t=70, lam=0.2"`` (numbers without trailing zeros)."""
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


def adversarial_summary(settings: dict[str, Any]) -> str:
    """The adversarial-training recipe in one line, or "none" (the settings omit adv_* when unused)."""
    attack = settings.get("adv_attack", "none")
    if attack == "none":
        return "none"
    parts = [attack, f"ε={settings['adv_eps']:g}"]
    if attack != "fgsm":  # FGSM is one step of ε
        parts.append(f"{settings['adv_steps']}×{settings['adv_step']:g}")
    parts.append(f"loss={settings['adv_loss']}")
    parts.append(f"clean weight={settings['adv_clean_weight']:g}")
    if settings.get("adv_targeted"):
        parts.append("targeted")
    return " ".join(parts)


def _setting_of(record: dict[str, Any]) -> str:
    """What a run shares with the CE run it is compared with: every setting but the objective's, and
    the device it trained on (a run's id leaves the device out, but its training time depends on it)."""
    rest = {k: v for k, v in record["settings"].items() if k not in OBJECTIVE_KEYS}
    rest["device"] = record.get("device")
    return json.dumps(rest, sort_keys=True, default=str)


def _train_seconds(record: dict[str, Any]) -> float | None:
    seconds = record.get("timing", {}).get("train_seconds")
    return float(seconds) if seconds is not None else None


def training_estimate(records: list[dict[str, Any]], dataset: str, model: str, device: str, objectives: list[str],
                      epochs: int) -> dict[str, Any]:
    """How long ``epochs`` of ``objectives`` (trained in one job) on ``dataset`` and ``model`` would spend
    in training steps, judged by the stored runs of that dataset and model on that kind of device
    ("cpu", "cuda"; "auto": any): per objective the median of its runs' step seconds per epoch.
    Test passes come on top (every ``eval_every`` epochs). An objective without such a run has no
    estimate (MAT's BIBO costs 10–33 times CE's step: another objective's rate would mislead).

    Returns ``{"seconds": the sum, or None when some objective has no run; "per_epoch": {objective:
    seconds}; "runs": how many runs the estimate rests on; "missing": objectives without a run}``."""
    rates: dict[str, list[float]] = {}
    for record in records:
        trained, seconds = (record.get("timing") or {}).get("epochs"), _train_seconds(record)
        kind = str(record.get("device") or "").split(":")[0]
        if (record.get("dataset") != dataset or record.get("model") != model or (device in ("cpu", "cuda")
                and kind != device) or not trained or seconds is None):
            continue
        rates.setdefault(record["settings"].get("objective"), []).append(seconds / trained)
    per_epoch = {o: sorted(rates[o])[len(rates[o]) // 2] for o in objectives if o in rates}
    missing = [o for o in objectives if o not in per_epoch]
    return {"seconds": None if missing else epochs * sum(per_epoch.values()), "per_epoch": per_epoch,
            "runs": sum(len(rates[o]) for o in per_epoch), "missing": missing}


def newest_comparison(records: list[dict[str, Any]], limit: int = 8) -> list[str]:
    """The ids of the newest stored run and the runs compared with it: the same settings and device
    but for the objective and its constants (a lockstep job's runs), newest first, at most ``limit``.
    ``records``: a listing, newest first (``RunStore.list_runs``)."""
    if not records:
        return []
    newest = _setting_of(records[0])
    return [r["run_id"] for r in records if _setting_of(r) == newest][:limit]


def ce_twins(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """For each run id, the stored CE run of the same setting. A CE run is its own twin; when several
    CE runs share a setting (CE with other constants, should it ever have any), the newest wins."""
    newest_ce: dict[str, dict[str, Any]] = {}
    for record in sorted(records, key=lambda r: r.get("created", 0)):  # newest last, so it wins
        if record["settings"].get("objective") == "ce":
            newest_ce[_setting_of(record)] = record
    twins = {}
    for record in records:
        if record["settings"].get("objective") == "ce":
            twins[record["run_id"]] = record
        elif _setting_of(record) in newest_ce:
            twins[record["run_id"]] = newest_ce[_setting_of(record)]
    return twins


def _number(value: Any) -> float | None:
    """A float, or None for a missing or non-finite value (NaN is not valid JSON, and means "unknown")."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def pick_result(results: list[dict[str, Any]], attack: str, eps: float) -> dict[str, Any] | None:
    """Among one run's cached accuracy results, the one for ``attack`` at ``eps``: the largest sample
    (the full test split when it is cached), then the newest."""
    matching = [r for r in results if r.get("attack") == attack and math.isclose(float(r.get("eps", -1)), eps,
                                                                                   rel_tol=1e-9, abs_tol=1e-12)]
    if not matching:
        return None
    return max(matching, key=lambda r: (int(r.get("samples", 0)), float(r.get("created", 0))))


def result_source(result: dict[str, Any]) -> str:
    """Which cached result a robust accuracy is: parameters, sample size and seed."""
    params = compact(result.get("params") or {}) or "default parameters"
    return f"{params}; first {result.get('samples')} test images; seed {result.get('seed')}"


# --- the headline: the worst case over every attack tried -------------------------------------------
def derived(store, name: str, run_id: str, compute, known: dict[str, Any] | None = None) -> Any:
    """``compute()`` (a JSON-able value derived from the run's cached results), kept in the store until
    the run's results change (``RunStore.derived``), so listing thousands of runs reads instead of
    recomputing. ``known``: the fresh values of many runs, read at once with ``store.derived(name)``."""
    known = store.derived(name, run_id) if known is None else known
    if run_id in known:
        return known[run_id]
    stamp = store.results_stamp(run_id)  # before computing: a result written meanwhile makes it stale
    value = compute()
    store.put_derived(name, run_id, stamp, value)
    return value


def worst_case_of(store, run_id: str, known: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """``compose_worst_case``, kept beside the run's results (``derived``); its {ε: …} maps are stored
    as [ε, …] pairs, as keys of stored objects are text."""
    def compute():
        head = compose_worst_case(store, run_id)
        return None if head is None else {**head, "eps": list(head["eps"].items()),
                                          "tried": list(head["tried"].items())}

    head = derived(store, "worst-case", run_id, compute, known)
    return None if head is None else {**head, "eps": {float(e): v for e, v in head["eps"]},
                                      "tried": {float(e): n for e, n in head["tried"]}}


def compose_worst_case(store, run_id: str) -> dict[str, Any] | None:
    """The headline robust accuracy of one run, from the cache alone: the per-sample worst case over
    every ℓ∞ attack cached for it (``engine.robustness.cached_worst_case``) on one sample set and seed.

    Outcomes of different sample sets or seeds do not combine, so one (samples, seed) pair is chosen:
    the one with the most attack settings tried (too few attacks overstate robustness, which more
    samples cannot mend), then the most samples, then the lowest seed. Returns None when nothing is
    cached, else {"samples", "seed", "attacks" (names, registry order), "settings" (attack settings
    tried), "eps" ({ε: worst-case accuracy} for ε > 0), "tried" ({ε: attack settings tried at ε})}."""
    from .attacks import ATTACKS
    from .robustness import cached_worst_case

    tried: dict[tuple[int, int], dict[str, str]] = {}
    for entry in store.list_results(run_id, "outcome"):
        spec = ATTACKS.get(entry.get("attack"))
        if spec is None or spec.budget != "linf":  # as cached_worst_case: the worst case is over ℓ∞ attacks
            continue
        setting = json.dumps([entry["attack"], entry.get("params", {})], sort_keys=True, default=str)
        tried.setdefault((int(entry["samples"]), int(entry["seed"])), {})[setting] = entry["attack"]
    order = list(ATTACKS)
    for samples, seed in sorted(tried, key=lambda k: (-len(tried[k]), -k[0], k[1])):
        points = {e: p for e, p in cached_worst_case(store, run_id, samples, seed).items() if e > 0}
        if points:  # else the clean decisions of that sample set are missing: try the next pair
            return {"samples": samples, "seed": seed, "settings": len(tried[samples, seed]),
                    "attacks": sorted(set(tried[samples, seed].values()), key=order.index),
                    "eps": {e: p["accuracy"] for e, p in sorted(points.items())},
                    "tried": {e: p["attacks"] for e, p in sorted(points.items())}}
    return None


def worst_case_source(head: dict[str, Any] | None) -> str:
    """What a worst case is over, in one line, or NOT_EVALUATED (with the command that evaluates it)."""
    if head is None:
        return NOT_EVALUATED
    settings = f"{head['settings']} attack setting{'s' * (head['settings'] != 1)}"
    text = f"worst case over {settings} ({', '.join(head['attacks'])}); first {head['samples']} test images; " \
           f"seed {head['seed']}"
    if len(set(head["tried"].values())) > 1:  # not every ε saw every attack: say how many each did
        text += "; settings per ε: " + ", ".join(f"{e:g}: {n}" for e, n in head["tried"].items())
    return text


def worst_case_at(head: dict[str, Any] | None, eps: float) -> float | None:
    """The worst case of ``worst_case_of`` at ``eps`` (None when not evaluated there)."""
    if head is None:
        return None
    return next((acc for e, acc in head["eps"].items() if math.isclose(e, float(eps), rel_tol=1e-9, abs_tol=1e-12)),
                None)


def worst_case_key(eps: float) -> str:
    """The row key of the worst case at ``eps`` (``worst_case@0.1``)."""
    return f"{WORST_CASE_PREFIX}{eps:g}"


def worst_case_columns(rows: list[dict[str, Any]]) -> list[tuple[str, float]]:
    """The worst-case columns of rows: (key, ε), by ε."""
    keys = dict.fromkeys(k for row in rows for k in row if k.startswith(WORST_CASE_PREFIX))
    return sorted(((k, float(k[len(WORST_CASE_PREFIX):])) for k in keys), key=lambda c: c[1])


def worst_case_rows(store, run_ids: list[str]) -> list[dict[str, Any]]:
    """The headline of the Start and Train pages' summaries: one row per stored run, "run", then
    "worst case @ ε 0.1" per ε cached for any of them, then "evaluated on" (or NOT_EVALUATED)."""
    heads = {r: worst_case_of(store, r) for r in run_ids if store.has_run(r)}
    grid = sorted({e for head in heads.values() if head for e in head["eps"]})
    rows = []
    for run_id, head in heads.items():
        row = {"run": f"{store.get_run(run_id)['objective'].upper()} ({run_id[:6]})"}
        row.update({f"worst case @ ε {e:g}": _number(head["eps"].get(e)) if head else None for e in grid})
        row["evaluated on"] = worst_case_source(head)
        rows.append(row)
    return rows


def runs_table(store, attack: str | None = None, eps: float | None = None,
               records: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """One row per stored run, newest first, with the headline robust accuracy: the worst case at every
    ε cached for any run (``worst_case@<ε>``, None where that run has none at that ε) and what it is
    over (``worst_case_source``). ``attack`` and ``eps`` add one attack's cached accuracy alone, an
    upper bound on the worst case (``alone_acc``, ``alone_source``). Nothing is ever computed here.
    ``records``: the listing, when the caller has it already."""
    if (attack is None) != (eps is None):
        raise ConfigError("attack and eps: give both (to show a cached robust accuracy) or neither")
    records = store.list_runs() if records is None else records
    twins = ce_twins(records)
    notes = store.notes()
    known = store.derived("worst-case")
    heads = {r["run_id"]: worst_case_of(store, r["run_id"], known) for r in records}
    grid = sorted({e for head in heads.values() if head for e in head["eps"]})
    rows = []
    for record in records:
        s, final = record["settings"], record.get("final", {})
        seconds, twin = _train_seconds(record), twins.get(record["run_id"])
        twin_seconds = _train_seconds(twin) if twin is not None else None
        overhead = (100.0 * (seconds / twin_seconds - 1.0)
                    if seconds is not None and twin_seconds else None)
        head = heads[record["run_id"]]
        note = notes.get(record["run_id"], {})
        row = {
            "name": note.get("name", ""),
            "run_id": record["run_id"],
            "tags": note.get("tags", ""),
            "dataset": record["dataset"],
            "model": record["model"],
            "objective": record["objective"],
            "constants": compact(s.get("params", {})),
            "seed": s.get("seed"),
            "epochs": s.get("epochs"),
            "adversarial_training": adversarial_summary(s),
            "fine_tuned_from": s.get("init_from") or None,
            "clean_acc": _number(final.get("test_acc")),
            "diverged": bool(record.get("diverged", False)),
            # the headline robust accuracy, next to the clean one
            **{worst_case_key(e): _number(head["eps"].get(e)) if head else None for e in grid},
            "worst_case_source": worst_case_source(head),
            "macro_f1": _number(final.get("test_f1")),
            "r_ab": _number(final.get("r_ab")),
            "r_ab_ci95": _number(final.get("r_ab_ci")),
            "train_seconds": _number(seconds),
            "overhead_vs_ce_pct": _number(overhead),
            "ce_run_id": twin["run_id"] if twin is not None else None,
            "notes": note.get("notes", ""),
        }
        if attack is not None:
            result = pick_result(store.list_results(record["run_id"], "accuracy"), attack, float(eps))
            row.update({"attack": attack, "eps": float(eps),
                        "alone_acc": _number(result["accuracy"]) if result else None,
                        "alone_source": result_source(result) if result else "not computed"})
        rows.append(row)
    return rows


def attacks_of(store, run_id: str, known: dict[str, Any] | None = None) -> list:
    """The (attack, ε) pairs with a cached accuracy alone for one run, kept beside its results."""
    def pairs() -> list:
        return sorted({(r["attack"], float(r["eps"])) for r in store.list_results(run_id, "accuracy")
                       if "attack" in r and "eps" in r})

    return derived(store, "attacks", run_id, pairs, known)


def cached_attacks(store, run_ids: list[str] | None = None) -> list[tuple[str, float]]:
    """The (attack, ε) pairs with a cached accuracy alone for at least one of ``run_ids`` (all runs
    when None), sorted by attack then ε."""
    if run_ids is None:
        run_ids = [r["run_id"] for r in store.list_runs()]
    known = store.derived("attacks")
    return sorted({(a, float(e)) for run_id in run_ids for a, e in attacks_of(store, run_id, known)})


def derive_listing_values(store, run_ids: list[str]) -> None:
    """Derive what listings show of each run's results (its worst case, its attacks) right after they
    were written, so that the Runs page reads them instead of composing them from every result.
    Without a store there is nothing to keep."""
    if store is None:
        return
    for run_id in dict.fromkeys(run_ids):
        worst_case_of(store, run_id)
        attacks_of(store, run_id)


def export_rows(rows: list[dict[str, Any]], fmt: str) -> str:
    """The rows as CSV (header of every key in first-seen order, None as an empty cell) or as a JSON
    list of objects. A missing or non-finite number is None / null / an empty cell in both: NaN is no
    valid JSON, and spreadsheets read an empty cell as missing."""
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"format must be one of {', '.join(EXPORT_FORMATS)}; got {fmt!r}")
    rows = [{k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}
            for row in rows]
    if fmt == "json":
        return json.dumps(rows, indent=2, ensure_ascii=False, allow_nan=False, default=str)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buffer.getvalue()
