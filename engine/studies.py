"""Studies: named grids of runs (objectives × seeds × values of settings and objective constants ×
datasets), each run evaluated, summarised per cell as mean ± 95 % CI over the seeds, with the
paper's printed numbers beside them and a verdict per claim.

A *cell* is one objective at one point of the grid on one dataset; its runs differ only by seed.
A *claim* is a paper's statement as a paired comparison of two cells on one metric ("GCCS at λ 0.2
beats λ 0 in clean accuracy"), judged seed by seed (engine.groups.paired_difference): reproduced
when the 95 % interval of the difference lies on the paper's side of 0, not reproduced when it lies
on the other side, within noise when it contains 0.

Read top to bottom:
    Study, study_from_dict, load_study     a definition (TOML file, dict or built-in name) and its checks
    planned_runs, training_jobs            the runs a study needs; jobs with distinct objectives in lockstep
    run_values                             one run's numbers: its record's and those of the evaluations
    study_results                          cells, gains over the baseline, paper numbers, claims, verdicts
    stored_values, save_values             the per-run values kept in the store beside the definition
    result_rows, to_markdown, to_latex, to_csv   the results as tables
"""
from __future__ import annotations

import csv
import io
import itertools
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cache.points import stable_hash

from .config import PRESETS, SETTINGS, ObjectiveSpec, TrainConfig, check_setting, preset_params
from .data import DATASET_NAMES
from .groups import MAX_SEED, mean_ci, paired_difference, record_metric, HIGHER, LOWER, NOISE, ONE_SEED, NO_SEED
from .objectives import OBJECTIVES, ConfigError, get_objective_class

# The preset a study trains under on each dataset unless it names one: the quick recipes where they
# exist, the papers' recipes (GPU) elsewhere.
DATASET_PRESETS = {"digits": "quick", "fashion-mnist": "fmnist-quick", "mnist": "mnist-paper",
                   "svhn": "svhn-paper", "cifar10": "cifar10-paper", "cifar100": "cifar100-paper"}
# Settings a grid may not vary: a study has its own seeds and datasets; the rest do not change a run.
NOT_AXES = ("seed", "dataset", "device", "channels_last", "compile", "eval_every")
MEASURES = ("deepfool", "cw", "spsa-grid")
REPRODUCED, NOT_REPRODUCED = "reproduced", "not reproduced"
VERDICTS = {HIGHER: {"higher": REPRODUCED, "lower": NOT_REPRODUCED},
            LOWER: {"higher": NOT_REPRODUCED, "lower": REPRODUCED}}
NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
KEYS = ("name", "title", "description", "objectives", "datasets", "seeds", "preset", "settings", "grid", "evaluate",
        "baseline", "claims", "paper", "notes")


@dataclass(frozen=True)
class Study:
    """A study's definition (see the module docstring). ``grid`` maps an axis to its values: a training
    setting ("batch_size") or an objective's constant ("gccs.lam"), which varies that objective only.
    ``evaluate``: {"suite": name, "eps", "samples"} or {"measure": name, "settings", "samples"} entries,
    run on every trained run. ``claims``: {"text", "metric", "a", "b", "expect" ("higher"/"lower"),
    "paper", optionally "metric_b" (b's metric when it is not a's)} with cell selectors a and b ({"objective": ..., axis: value}). ``paper``: printed numbers,
    {"cell": selector, "metric", "values": {dataset: number}}."""

    name: str
    objectives: tuple[ObjectiveSpec, ...]
    title: str = ""
    description: str = ""
    datasets: tuple[str, ...] = ("digits",)
    seeds: tuple[int, ...] = (0, 1, 2)
    preset: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, tuple] = field(default_factory=dict)
    evaluate: tuple[dict[str, Any], ...] = ({"suite": "robust"},)
    baseline: str | None = None
    claims: tuple[dict[str, Any], ...] = ()
    paper: tuple[dict[str, Any], ...] = ()
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["objectives"] = [{"name": o.name, "params": dict(o.params)} for o in self.objectives]
        d["grid"] = {k: list(v) for k, v in self.grid.items()}
        for key in ("datasets", "seeds", "evaluate", "claims", "paper"):
            d[key] = list(d[key])
        return d

    def with_(self, **changes) -> "Study":
        return study_from_dict({**self.to_dict(), **changes})


def _field_error(where: str, allowed: str, got: Any) -> ConfigError:
    return ConfigError(f"study {where} must be {allowed}; got {got!r}")


def _objective_specs(value: Any) -> tuple[ObjectiveSpec, ...]:
    """The study's objectives with the constants it gives them (checked; the rest are filled in per
    dataset when a run is planned, so a preset's own constants apply as they do to ``train``)."""
    allowed = f"a list of objective names ({', '.join(OBJECTIVES)}) or {{name, params}} tables"
    if not isinstance(value, (list, tuple)) or not value:
        raise _field_error("objectives", allowed, value)
    specs = []
    for item in value:
        if isinstance(item, dict) and set(item) - {"name", "params"}:
            raise ConfigError(f"study objectives: unknown key {sorted(set(item) - {'name', 'params'})[0]!r} in "
                              f"{item!r}; allowed: name, params")
        name, params = (item, {}) if isinstance(item, str) else (
            (item.get("name"), item.get("params", {})) if isinstance(item, dict) else (None, None))
        if not isinstance(name, str) or name not in OBJECTIVES or not isinstance(params, dict):
            raise _field_error("objectives", allowed, item)
        checked = get_objective_class(name).validate_params(dict(params))
        specs.append(ObjectiveSpec(name, {k: checked[k] for k in params}))
    if len({s.name for s in specs}) != len(specs):
        raise ConfigError("study objectives: each objective may appear once (vary its constants with the grid, "
                          "e.g. [grid] \"gccs.lam\" = [0, 0.2])")
    return tuple(specs)


def _check_axis(axis: str, values: Any, names: set[str]) -> tuple:
    if not isinstance(values, (list, tuple)) or not values:
        raise _field_error(f"grid.{axis}", "a non-empty list of values", values)
    cast = _cast_axis(axis, values, names)
    if len(set(map(repr, cast))) != len(cast):
        raise _field_error(f"grid.{axis}", "a list of distinct values", values)
    return cast


def _cast_axis(axis: str, values: Any, names: set[str]) -> tuple:
    objective, _, param = axis.rpartition(".")
    if objective:
        if objective not in names:
            raise ConfigError(f"study grid.{axis}: objective {objective!r} is not among the study's objectives "
                              f"({', '.join(sorted(names))})")
        cls = get_objective_class(objective)
        if param not in cls.defaults():
            raise ConfigError(f"study grid.{axis}: {objective} has no constant {param!r}; allowed: "
                              f"{', '.join(cls.defaults()) or 'none'}")
        return tuple(cls.validate_params({param: v})[param] for v in values)
    allowed = [n for n in SETTINGS if n not in NOT_AXES]
    if axis not in allowed:
        raise ConfigError(f"study grid.{axis}: not a setting a grid can vary; allowed: {', '.join(allowed)} or "
                          f"objective.constant (e.g. gccs.lam)")
    return tuple(check_setting(axis, v) for v in values)


def _check_evaluation(entry: Any, index: int) -> dict[str, Any]:
    from .measures import measure_settings
    from .suites import suite_plan

    where = f"evaluate[{index}]"
    if not isinstance(entry, dict) or ("suite" in entry) == ("measure" in entry):
        raise _field_error(where, "a table with either suite = NAME or measure = NAME", entry)
    samples = entry.get("samples")
    if samples is not None and (not isinstance(samples, int) or isinstance(samples, bool) or samples < 1):
        raise _field_error(f"{where}.samples", "a positive integer (the first N test images) or absent (all)", samples)
    unknown = set(entry) - {"suite", "eps", "samples", "measure", "settings"}
    if unknown:
        raise ConfigError(f"study {where}: unknown key {sorted(unknown)[0]!r}; allowed: suite, eps, samples, "
                          f"measure, settings")
    if "suite" in entry:
        if not isinstance(entry["suite"], str):
            raise _field_error(f"{where}.suite", "a suite's name", entry["suite"])
        try:  # names the suite or the ε that is wrong
            plan = suite_plan(entry["suite"], entry.get("eps"))
        except ConfigError as exc:
            raise ConfigError(f"study {where}: {exc}") from None
        return {"suite": entry["suite"], "eps": None if entry.get("eps") is None else list(plan[0][2]),
                "samples": samples}
    if not isinstance(entry["measure"], str) or entry["measure"] not in MEASURES:
        raise _field_error(f"{where}.measure", f"one of {', '.join(MEASURES)}", entry["measure"])
    return {"measure": entry["measure"], "settings": measure_settings(entry["measure"], dict(entry.get("settings", {}))),
            "samples": 100 if samples is None else samples}


def _selector_matches(selector: dict[str, Any], cell: dict[str, Any]) -> bool:
    if selector.get("objective", cell["objective"]) != cell["objective"]:
        return False
    return all(cell["settings"].get(k) == v for k, v in selector.items() if k != "objective")


def _table(d: dict[str, Any], key: str) -> dict[str, Any]:
    value = d.get(key) or {}
    if not isinstance(value, dict):
        raise _field_error(key, f"a table ([{key}] in TOML)", value)
    return dict(value)


def _tables(d: dict[str, Any], key: str, default: tuple = ()) -> tuple[dict[str, Any], ...]:
    value = d.get(key, default)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, dict) for v in value):
        raise _field_error(key, f"a list of tables ([[{key}]] in TOML)", value)
    return tuple(dict(v) for v in value)


CLAIM_KEYS = ("text", "metric", "metric_b", "a", "b", "expect", "paper")
PAPER_KEYS = ("cell", "metric", "values")


def _check_claim(claim: dict[str, Any], i: int, cells: list[dict[str, Any]]) -> None:
    unknown = sorted(set(claim) - set(CLAIM_KEYS))
    if unknown:
        raise ConfigError(f"study claims[{i}]: unknown key {unknown[0]!r}; allowed: {', '.join(CLAIM_KEYS)}")
    for side in ("a", "b"):
        hits = [c for c in cells if isinstance(claim.get(side), dict) and _selector_matches(claim[side], c)]
        if len(hits) != 1:
            raise ConfigError(f"study claims[{i}].{side} must select exactly one cell; {claim.get(side)!r} selects "
                              f"{len(hits)}")
    if claim.get("expect") not in ("higher", "lower"):
        raise _field_error(f"claims[{i}].expect", '"higher" or "lower"', claim.get("expect"))
    if not isinstance(claim.get("metric"), str) or not isinstance(claim.get("metric_b", ""), str):
        raise _field_error(f"claims[{i}].metric", "metric = NAME, a metric's name (and metric_b = NAME, b's, "
                                                  "optionally)", claim.get("metric"))
    if not isinstance(claim.get("paper", {}), dict) or not all(
            isinstance(v, (int, float)) for v in claim.get("paper", {}).values()):
        raise _field_error(f"claims[{i}].paper", "a table of dataset = the paper's difference", claim.get("paper"))


def _check_paper(entry: dict[str, Any], i: int, cells: list[dict[str, Any]]) -> None:
    unknown = sorted(set(entry) - set(PAPER_KEYS))
    if unknown:
        raise ConfigError(f"study paper[{i}]: unknown key {unknown[0]!r}; allowed: {', '.join(PAPER_KEYS)}")
    if not isinstance(entry.get("cell"), dict) or not any(_selector_matches(entry["cell"], c) for c in cells):
        raise _field_error(f"paper[{i}].cell", "a selector of at least one cell", entry.get("cell"))
    values = entry.get("values")
    if not isinstance(entry.get("metric"), str) or not isinstance(values, dict) or not values or not all(
            ds in DATASET_NAMES and isinstance(v, (int, float)) for ds, v in values.items()):
        raise _field_error(f"paper[{i}]", f"a table with metric = NAME and values = {{dataset = number}} for "
                                          f"datasets among {', '.join(DATASET_NAMES)}", entry)


def study_from_dict(d: dict[str, Any]) -> Study:
    """A checked Study; every wrong field raises a ConfigError that names it and what is allowed."""
    if not isinstance(d, dict):
        raise ConfigError(f"a study must be a table of {', '.join(KEYS)}; got {type(d).__name__}")
    unknown = sorted(set(d) - set(KEYS))
    if unknown:
        raise ConfigError(f"study: unknown key {unknown[0]!r}; allowed: {', '.join(KEYS)}")
    name = d.get("name")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise _field_error("name", "lower-case letters, digits, '.', '_' or '-' (at most 64)", name)
    objectives = _objective_specs(d.get("objectives"))
    names = {o.name for o in objectives}
    datasets = d.get("datasets", ("digits",))
    if (not isinstance(datasets, (list, tuple)) or not datasets or not all(isinstance(ds, str) for ds in datasets)
            or any(ds not in DATASET_NAMES for ds in datasets) or len(set(datasets)) != len(datasets)):
        raise _field_error("datasets", f"a list of distinct datasets from {', '.join(DATASET_NAMES)}", datasets)
    seeds = d.get("seeds", (0, 1, 2))
    if (not isinstance(seeds, (list, tuple)) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_SEED for s in seeds)
            or len(set(seeds)) != len(seeds)):
        raise _field_error("seeds", f"a list of distinct integers from 0 to {MAX_SEED}", seeds)
    preset = d.get("preset")
    if preset is not None and preset not in PRESETS:
        raise _field_error("preset", f"one of {', '.join(PRESETS)} or absent (each dataset's own)", preset)
    settings = _table(d, "settings")
    for key, value in settings.items():
        if key not in SETTINGS or key in ("seed", "dataset"):
            raise ConfigError(f"study settings.{key}: not a training setting a study may fix; allowed: "
                              f"{', '.join(n for n in SETTINGS if n not in ('seed', 'dataset'))}")
        settings[key] = check_setting(key, value)
    grid = {axis: _check_axis(axis, values, names) for axis, values in _table(d, "grid").items()}
    clash = sorted(set(grid) & (set(settings) | {f"{o.name}.{k}" for o in objectives for k in o.params}))
    if clash:
        where = "settings" if clash[0] in settings else "the objective's params"
        raise ConfigError(f"study: {clash[0]} is both fixed in {where} and varied in grid; keep one")
    evaluate = d.get("evaluate", ({"suite": "robust"},))
    if not isinstance(evaluate, (list, tuple)):
        raise _field_error("evaluate", "a list of tables ([[evaluate]] in TOML)", evaluate)
    evaluate = tuple(_check_evaluation(e, i) for i, e in enumerate(evaluate))
    baseline = d.get("baseline", "ce" if "ce" in names else None)
    if baseline is not None and baseline not in names:
        raise _field_error("baseline", f"one of the study's objectives ({', '.join(sorted(names))}) or absent", baseline)
    study = Study(name=name, objectives=objectives, title=str(d.get("title", "")),
                  description=str(d.get("description", "")), datasets=tuple(datasets), seeds=tuple(seeds),
                  preset=preset, settings=settings, grid=grid, evaluate=evaluate, baseline=baseline,
                  claims=_tables(d, "claims"), paper=_tables(d, "paper"), notes=str(d.get("notes", "")))
    cells = planned_cells(study, study.datasets[0])
    for i, claim in enumerate(study.claims):
        _check_claim(claim, i, cells)
    for i, entry in enumerate(study.paper):
        _check_paper(entry, i, cells)
    return study


def load_study(name_or_path: str) -> Study:
    """A built-in reproduction by name (engine.reproductions) or a study's TOML file."""
    from .reproductions import REPRODUCTIONS

    if name_or_path in REPRODUCTIONS:
        return study_from_dict(REPRODUCTIONS[name_or_path])
    path = Path(name_or_path)
    if not path.is_file():
        raise ConfigError(f"study must be a built-in ({', '.join(REPRODUCTIONS)}) or a TOML file; got "
                          f"{name_or_path!r} (no such file)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"study file {path}: not valid TOML ({exc})") from None
    return study_from_toml(text, f"study file {path}")


def study_from_toml(text: str, where: str = "the study's definition") -> Study:
    """A checked Study from TOML text (a file's, or what the Studies page's editor holds)."""
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML ({exc})") from None
    return study_from_dict(data)


# --- the runs a study needs --------------------------------------------------------------------------
def _axes_of(study: Study, objective: str) -> list[str]:
    """The grid axes that vary ``objective``'s runs: every setting axis and its own constants."""
    return [a for a in study.grid if "." not in a or a.rpartition(".")[0] == objective]


def planned_cells(study: Study, dataset: str) -> list[dict[str, Any]]:
    """Every cell on ``dataset``: {"dataset", "objective", "settings" (axis: value), "label", "config"}
    where ``config`` trains the cell's objective alone at seed 0 (``with_(seed=s)`` for the others)."""
    preset = study.preset or DATASET_PRESETS[dataset]
    cells = []
    for spec in study.objectives:
        axes = _axes_of(study, spec.name)
        for values in itertools.product(*(study.grid[a] for a in axes)):
            point = dict(zip(axes, values))
            training = {k: v for k, v in point.items() if "." not in k}
            constants = {k.rpartition(".")[2]: v for k, v in point.items() if "." in k}
            params = {**preset_params(preset, spec.name, dataset), **spec.params, **constants}
            base = {**PRESETS[preset], "dataset": dataset, **study.settings, **training, "seed": 0}
            config = TrainConfig.from_dict({**base, "objectives": (ObjectiveSpec(spec.name, params),)})
            label = spec.name.upper() + "".join(f" · {k.rpartition('.')[2]} {v:g}" if isinstance(v, float)
                                                else f" · {k.rpartition('.')[2]} {v}" for k, v in point.items())
            cells.append({"dataset": dataset, "objective": spec.name, "settings": point, "label": label,
                          "config": config})
    return cells


def planned_runs(study: Study) -> list[dict[str, Any]]:
    """Every run: {"cell" (its index in the dataset-major list of cells), "seed", "run_id", "config"}."""
    runs = []
    cells = [c for ds in study.datasets for c in planned_cells(study, ds)]
    for index, cell in enumerate(cells):
        for seed in study.seeds:
            config = cell["config"].with_(seed=seed)
            runs.append({"cell": index, "seed": seed, "config": config, "run_id": config.run_id(config.objectives[0])})
    return runs


def training_jobs(runs: list[dict[str, Any]]) -> list[TrainConfig]:
    """The runs as lockstep jobs: runs whose settings differ only by objective train together, each
    job with distinct objectives (a member trained in lockstep is the run trained alone)."""
    jobs: dict[str, list[list[ObjectiveSpec]]] = {}
    bases: dict[str, TrainConfig] = {}
    for run in runs:
        config = run["config"]
        key = stable_hash({**config.to_dict(), "objectives": []})
        bases.setdefault(key, config)
        spec = config.objectives[0]
        packs = jobs.setdefault(key, [])
        pack = next((p for p in packs if spec.name not in {s.name for s in p}), None)
        if pack is None:
            packs.append([spec])
        elif spec not in pack:
            pack.append(spec)
    return [bases[key].with_(objectives=tuple(pack)) for key, packs in jobs.items() for pack in packs]


def evaluations_key(study: Study) -> str:
    """Names what a run's values were computed by: the same evaluations give the same key."""
    return stable_hash(list(study.evaluate))


# --- one run's numbers ---------------------------------------------------------------------------------
def _attack_label(attack: str, params: dict[str, Any]) -> str:
    return f"{attack}-{params['steps']}" if "steps" in params else attack


def worst_case_name(eps: float) -> str:
    return f"worst case @ ε {eps:g}"


def metric_note(name: str) -> str:
    """What a metric is, in a few words, for the tables' captions."""
    if name.startswith("worst case"):
        return "per-sample worst case over the robust suite"
    if " @ ε " in name:
        return "one attack alone: an upper bound on the robust accuracy"
    return {"clean_accuracy": "test accuracy", "macro_f1": "macro F1", "r_ab": "r_AB = d_inter / d_intra",
            "deepfool ρ": "DeepFool's mean ‖r‖₂/‖x‖₂ over the flipped samples"}.get(name, "")


def run_values(store, run_id: str, evaluations: tuple[dict[str, Any], ...], seed: int = 0, device="cpu",
               data_dir=None, cancel=None) -> dict[str, float | None]:
    """One stored run's numbers: clean accuracy, macro F1 and r_AB from its record, then each
    evaluation's (cached in the store like any other evaluation, so asking again attacks nothing):
    a suite gives every attack's accuracy alone per ε ("pgd-5 @ ε 0.05", an upper bound) and, for
    the robust suite, the per-sample worst case ("worst case @ ε 0.05"); DeepFool its ρ, C&W its mean
    ℓ2, the SPSA grid one accuracy per (iterations, samples)."""
    from .measures import measure_job
    from .suites import suite_job

    record = store.get_run(run_id)
    values: dict[str, float | None] = {m: record_metric(record, m) for m in ("clean_accuracy", "macro_f1", "r_ab")}
    for entry in evaluations:
        if "suite" in entry:
            out = suite_job(store, [run_id], entry["suite"], entry["samples"], seed, device=device,
                            data_dir=data_dir, cancel=cancel, eps=entry["eps"])
            for attack in out["attacks"]:
                curve = attack["curves"].get(run_id, {"eps": [], "accuracy": []})
                for e, acc in zip(curve["eps"], curve["accuracy"]):
                    if e > 0:
                        values[f"{_attack_label(attack['attack'], attack['params'])} @ ε {e:g}"] = acc
            if entry["suite"] == "robust":
                worst = out["worst_case"].get(run_id, {"eps": [], "accuracy": []})
                values.update({worst_case_name(e): acc for e, acc in zip(worst["eps"], worst["accuracy"]) if e > 0})
        else:
            point = measure_job(store, [run_id], entry["measure"], entry["settings"], entry["samples"], seed,
                                device=device, data_dir=data_dir, cancel=cancel)["points"][0]
            if entry["measure"] == "deepfool":
                values["deepfool ρ"] = point["rho"]
            elif entry["measure"] == "cw":
                values["c&w mean ℓ2"] = point["mean_l2"]
            else:
                for it, row in zip(point["iterations"], point["accuracy"]):
                    for bs, acc in zip(point["spsa_samples"], row):
                        values[f"spsa it {it} bs {bs} @ ε {point['eps']:g}"] = acc
    return values


# --- the per-run values in the store -------------------------------------------------------------------
def stored_values(store, study: Study) -> dict[str, dict[str, float | None]]:
    """{run_id: values} kept for the study, for runs whose checkpoint is still the one they were
    computed from and whose evaluations are the study's: a retrained run's old numbers are not shown."""
    row = store.get_study(study.name) or {}
    digests = {r["run_id"]: r.get("blobs", {}).get("checkpoint") for r in store.list_runs()}
    key = evaluations_key(study)
    return {run_id: entry["values"] for run_id, entry in (row.get("values") or {}).items()
            if isinstance(entry, dict) and entry.get("checkpoint") == digests.get(run_id)
            and entry.get("evaluations") == key and isinstance(entry.get("values"), dict)}


def save_values(store, study: Study, values: dict[str, dict[str, float | None]], seconds: float | None = None) -> None:
    """Keep the study's definition and its runs' values (added to those kept before)."""
    row = store.get_study(study.name) or {}
    digests = {r["run_id"]: r.get("blobs", {}).get("checkpoint") for r in store.list_runs()}
    key = evaluations_key(study)
    kept = dict(row.get("values") or {})
    kept.update({run_id: {"checkpoint": digests[run_id], "evaluations": key, "values": v}
                 for run_id, v in values.items() if digests.get(run_id)})
    store.put_study(study.name, {"name": study.name, "definition": study.to_dict(), "values": kept,
                                 "updated": time.time(), "seconds": seconds if seconds is not None
                                 else row.get("seconds")})


# --- cells, gains, claims ------------------------------------------------------------------------------
def _verdict(difference: dict[str, Any], expect: str) -> str:
    found = difference["verdict"]
    if found in VERDICTS:
        return VERDICTS[found][expect]
    return {NOISE: NOISE, ONE_SEED: ONE_SEED}.get(found, NO_SEED)


def study_results(study: Study, values: dict[str, dict[str, float | None]], failed: list[dict[str, Any]] | None = None,
                  seconds: float | None = None) -> dict[str, Any]:
    """The study's cells on every dataset: {"settings", "n", "seeds", "run_ids", "metrics": {name:
    mean_ci}, "gain": {name: paired difference to the baseline cell}, "paper": {name: {"dataset",
    "value"}}}; its claims with verdicts per dataset; runs not yet computed under "missing"."""
    runs = planned_runs(study)
    cells = [c for ds in study.datasets for c in planned_cells(study, ds)]
    out_cells = []
    for index, cell in enumerate(cells):
        own = [r for r in runs if r["cell"] == index]
        per_seed = {r["seed"]: values.get(r["run_id"]) for r in own}
        names = sorted({m for v in per_seed.values() if v for m in v})
        out_cells.append({"dataset": cell["dataset"], "objective": cell["objective"], "label": cell["label"],
                          "settings": cell["settings"], "seeds": [r["seed"] for r in own],
                          "run_ids": [r["run_id"] for r in own], "n": sum(1 for v in per_seed.values() if v),
                          "values": {m: {s: (v or {}).get(m) for s, v in per_seed.items()} for m in names},
                          "metrics": {m: mean_ci((v or {}).get(m) for v in per_seed.values()) for m in names},
                          "gain": {}, "paper": {}})
    for cell in out_cells:
        base = _baseline_cell(study, cell, out_cells)
        if base is not None:
            cell["gain"] = {m: paired_difference(cell["values"][m], base["values"].get(m, {}))
                            for m in cell["values"]}
            cell["baseline"] = base["label"]
        for printed in study.paper:
            if _selector_matches(printed.get("cell", {}), cell):
                source = cell["dataset"] if cell["dataset"] in printed["values"] else next(iter(printed["values"]))
                cell["paper"][printed["metric"]] = {"dataset": source, "value": printed["values"][source]}
    claims = []
    for dataset in study.datasets:
        here = [c for c in out_cells if c["dataset"] == dataset]
        for claim in study.claims:
            a = next(c for c in here if _selector_matches(claim["a"], c))
            b = next(c for c in here if _selector_matches(claim["b"], c))
            metric_b = claim.get("metric_b", claim["metric"])
            diff = paired_difference(a["values"].get(claim["metric"], {}), b["values"].get(metric_b, {}))
            paper = claim.get("paper") or {}
            claims.append({"dataset": dataset, "text": claim.get("text", ""), "metric": claim["metric"],
                           "metric_b": metric_b,
                           "a": a["label"], "b": b["label"], "expect": claim["expect"],
                           "paper_difference": paper, "seeds": diff["seeds"],
                           "mean_difference": diff["mean_difference"], "ci95": diff["ci95"],
                           "verdict": _verdict(diff, claim["expect"])})
    missing = [{"cell": cells[r["cell"]]["label"], "dataset": cells[r["cell"]]["dataset"], "seed": r["seed"],
                "run_id": r["run_id"]} for r in runs if r["run_id"] not in values]
    return {"study": study.name, "title": study.title, "description": study.description, "notes": study.notes,
            "datasets": list(study.datasets), "seeds": list(study.seeds), "baseline": study.baseline,
            "definition": study.to_dict(), "cells": out_cells, "claims": claims, "missing": missing,
            "failed": failed or [], "runs": len(runs), "seconds": seconds}


def _baseline_cell(study: Study, cell: dict[str, Any], cells: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The baseline objective's cell at the same settings (the same values of every setting axis)."""
    if study.baseline is None or cell["objective"] == study.baseline:
        return None
    shared = {k: v for k, v in cell["settings"].items() if "." not in k}
    return next((c for c in cells if c["dataset"] == cell["dataset"] and c["objective"] == study.baseline
                 and {k: v for k, v in c["settings"].items() if "." not in k} == shared), None)


# --- tables ---------------------------------------------------------------------------------------------
def _shown_metrics(results: dict[str, Any]) -> list[str]:
    """Every metric some cell has, in a stable order: the record's first, then by name."""
    found = {m for c in results["cells"] for m in c["metrics"]}
    first = [m for m in ("clean_accuracy", "r_ab", "macro_f1") if m in found]
    return first + sorted(found - set(first))


def _mean_ci_text(summary: dict[str, Any] | None, digits: int = 4) -> str:
    if not summary or summary.get("mean") is None:
        return "–"
    if summary.get("ci95") is None:
        return f"{summary['mean']:.{digits}f} (n=1)"
    return f"{summary['mean']:.{digits}f} ± {summary['ci95']:.{digits}f}"


def result_rows(results: dict[str, Any], metrics: list[str] | None = None) -> list[dict[str, str]]:
    """One row per cell: dataset, cell, seeds, then for each metric its mean ± 95 % CI, the paper's
    printed number (with the dataset it was printed for) and the gain over the baseline, paired by seed."""
    metrics = metrics or _shown_metrics(results)
    columns = ["dataset", "cell", "n"]
    for m in metrics:
        columns.append(m)
        columns += sorted({f"{m} · paper ({c['paper'][m]['dataset']})" for c in results["cells"] if m in c["paper"]})
        if any(c["gain"].get(m) for c in results["cells"]):
            columns.append(f"{m} · gain over {str(results['baseline']).upper()}")
    rows = []
    for cell in results["cells"]:
        row = dict.fromkeys(columns, "")
        row.update({"dataset": cell["dataset"], "cell": cell["label"], "n": str(cell["n"])})
        for m in metrics:
            digits = 2 if m in ("r_ab", "deepfool ρ", "c&w mean ℓ2") else 4
            row[m] = _mean_ci_text(cell["metrics"].get(m), digits)
            if m in cell["paper"]:
                printed = cell["paper"][m]
                row[f"{m} · paper ({printed['dataset']})"] = f"{printed['value']:g}"
            if cell["gain"].get(m):
                g = cell["gain"][m]
                row[f"{m} · gain over {results['baseline'].upper()}"] = (
                    _mean_ci_text({"mean": g["mean_difference"], "ci95": g["ci95"]}, digits) + f" ({g['verdict']})")
        rows.append(row)
    return rows


def claim_rows(results: dict[str, Any]) -> list[dict[str, str]]:
    out = []
    for c in results["claims"]:
        paper = ", ".join(f"{k}: {v:+g}" for k, v in c["paper_difference"].items()) or "–"
        diff = {"mean": c["mean_difference"], "ci95": c["ci95"]}
        metric = c["metric"] if c["metric_b"] == c["metric"] else f"{c['metric']} vs {c['metric_b']}"
        out.append({"dataset": c["dataset"], "claim": c["text"] or f"{c['a']} {c['expect']} than {c['b']}",
                    "metric": metric, "paper's difference": paper,
                    "difference (a − b, mean ± 95% CI)": _mean_ci_text(diff),
                    "seeds": ", ".join(map(str, c["seeds"])) or "–", "verdict": c["verdict"]})
    return out


def _columns(rows: list[dict[str, str]]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    return columns


def to_markdown(rows: list[dict[str, str]]) -> str:
    columns = _columns(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r.get(c, "")).replace("|", "\\|") for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _latex_escape(text: str) -> str:
    text = str(text)
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("#", r"\#"), ("_", r"\_"),
                 ("±", r"$\pm$"), ("ε", r"$\varepsilon$"), ("λ", r"$\lambda$"), ("ρ", r"$\rho$"), ("−", "--"),
                 ("μ", r"$\mu$"), ("σ", r"$\sigma$"), ("ℓ", r"$\ell$"), ("·", r"$\cdot$"), ("₂", r"$_2$")):
        text = text.replace(a, b)
    return text


def to_latex(rows: list[dict[str, str]], caption: str = "") -> str:
    columns = _columns(rows)
    body = [" & ".join(_latex_escape(c) for c in columns) + r" \\ \hline"]
    body += [" & ".join(_latex_escape(r.get(c, "")) for c in columns) + r" \\" for r in rows]
    return ("\\begin{table}\n\\centering\n\\begin{tabular}{" + "l" * len(columns) + "}\n\\hline\n" + "\n".join(body)
            + "\n\\hline\n\\end{tabular}\n" + (f"\\caption{{{_latex_escape(caption)}}}\n" if caption else "")
            + "\\end{table}\n")


def to_csv(rows: list[dict[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_columns(rows))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()

