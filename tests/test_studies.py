"""Studies: a definition's checks, the runs it plans, its verdicts on known numbers, a real tiny study
run locally and under Ray, a run carried between stores, and `python -m engine study`.

The tiny study (CE and GCCS on digits, 2 epochs, seeds 0 and 1, PGD-10 / adaptive / margin PGD-10 at
ε 0.1 on 30 test images and DeepFool on 20) is trained once per module; tests that change a store
work on a copy of it."""
import csv
import io
import json
import math
import shutil
import types

import pytest
import torch
from scipy import stats

from cache import RunStore, StoreError, codec
from cache.check import check_store
from engine.__main__ import main, parser, build_config
from engine.config import ObjectiveSpec, preset
from engine.objectives import ConfigError
from engine.reproductions import REPRODUCTIONS
from engine.studies import (claim_rows, load_study, planned_cells, planned_runs, result_rows, run_values, save_values,
                            stored_values, study_from_dict, study_results, to_csv, to_latex, to_markdown,
                            training_jobs)
from engine.suites import SUITES, suite_plan
from engine.study_run import run_study

ADAPTIVE_EPS = 0.1
TINY = {
    "name": "tiny", "title": "a tiny study", "objectives": ["ce", "gccs"], "seeds": [0, 1],
    "settings": {"epochs": 2},
    "evaluate": [{"suite": "adaptive", "eps": [ADAPTIVE_EPS], "samples": 30}, {"measure": "deepfool", "samples": 20}],
    "paper": [{"cell": {"objective": "gccs"}, "metric": "clean_accuracy", "values": {"mnist": 0.9958}}],
    "claims": [{"text": "GCCS beats CE", "metric": "clean_accuracy", "a": {"objective": "gccs"},
                "b": {"objective": "ce"}, "expect": "higher", "paper": {"mnist": 0.0023}},
               {"text": "PGD is weaker than the adaptive attack", "metric": "pgd-10 @ ε 0.1",
                "metric_b": "adaptive-pgd-10 @ ε 0.1", "a": {"objective": "gccs"}, "b": {"objective": "gccs"},
                "expect": "higher"}],
}
# what study_from_dict needs at least; the cases below change one field each
BASE = {"name": "t", "objectives": ["ce", "gccs"], "seeds": [0, 1], "evaluate": []}
CLAIM = {"metric": "clean_accuracy", "a": {"objective": "gccs"}, "b": {"objective": "ce"}, "expect": "higher"}
VERDICTS = {"reproduced", "not reproduced", "within noise", "one seed: no verdict", "no shared seed: no verdict"}


def producible_metrics(study) -> set[str]:
    """Every metric name the study's evaluations give a run (engine.studies.run_values' naming)."""
    names = {"clean_accuracy", "macro_f1", "r_ab"}
    for entry in study.evaluate:
        if "suite" in entry:
            suite = SUITES[entry["suite"]]
            grids = set()
            for attack, params, grid in suite_plan(entry["suite"], entry["eps"]):
                grids |= {e for e in grid if e > 0}
                if suite.cascade and attack not in suite.alone:
                    continue  # a cascade member's own curve is not known: it shows only in the worst case
                label = f"{attack}-{params['steps']}" if "steps" in params else attack
                names |= {f"{label} @ ε {e:g}" for e in grid if e > 0}
            if entry["suite"] == "robust":
                names |= {f"worst case @ ε {e:g}" for e in grids}
        elif entry["measure"] == "deepfool":
            names.add("deepfool ρ")
        elif entry["measure"] == "cw":
            names.add("c&w mean ℓ2")
        else:
            s = entry["settings"]
            names |= {f"spsa it {it} bs {bs} @ ε {s['eps']:g}" for it in s["iterations"] for bs in s["spsa_samples"]}
    return names


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """``python -m engine ARGS`` by its ``main`` in this process: exit code, stdout, stderr."""
    capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def cells_by_label(results):
    return {c["label"]: c for c in results["cells"]}


# --- 1. validation ------------------------------------------------------------------------------------
@pytest.mark.parametrize("change, words", [
    ({"sedes": [0]}, ["unknown key 'sedes'", "allowed", "seeds", "objectives"]),
    ({"name": "Bad Name"}, ["study name", "lower-case letters", "'Bad Name'"]),
    ({"name": "x" * 65}, ["study name", "at most 64"]),
    ({"objectives": ["ce", "xent"]}, ["study objectives", "'xent'", "gccs", "mmc", "pcl"]),
    ({"objectives": []}, ["study objectives", "objective names"]),
    ({"objectives": ["gccs", "gccs"]}, ["study objectives", "once", "grid"]),
    ({"objectives": [{"name": "gccs", "params": {"lamb": 0.1}}]}, ["'lamb'", "gccs", "lam", "mu_t"]),
    ({"objectives": [{"name": "gccs", "params": {"lam": "x"}}]}, ["gccs.lam", "number", "'x'"]),
    ({"datasets": ["imagenet"]}, ["study datasets", "'imagenet'", "digits", "cifar10"]),
    ({"datasets": ["digits", "digits"]}, ["study datasets", "distinct"]),
    ({"datasets": []}, ["study datasets"]),
    ({"seeds": [0, 0]}, ["study seeds", "distinct integers", "2147483647"]),
    ({"seeds": [-1]}, ["study seeds", "[-1]"]),
    ({"seeds": [True]}, ["study seeds", "[True]"]),
    ({"seeds": [0.5]}, ["study seeds", "[0.5]"]),
    ({"seeds": []}, ["study seeds"]),
    ({"seeds": "0,1"}, ["study seeds", "'0,1'"]),
    ({"preset": "slow"}, ["study preset", "quick", "fmnist-quick", "'slow'"]),
    ({"grid": {"learning_rate": [0.1]}}, ["grid.learning_rate", "not a setting", "batch_size", "gccs.lam"]),
    ({"grid": {"seed": [0, 1]}}, ["grid.seed", "not a setting", "epochs"]),
    ({"grid": {"dataset": ["digits"]}}, ["grid.dataset", "not a setting"]),
    ({"grid": {"mmc.mu": [1.0]}}, ["grid.mmc.mu", "'mmc'", "not among", "ce, gccs"]),
    ({"grid": {"gccs.mu": [1.0]}}, ["grid.gccs.mu", "no constant 'mu'", "mu_t", "lam"]),
    ({"grid": {"gccs.lam": []}}, ["grid.gccs.lam", "non-empty list"]),
    ({"grid": {"gccs.lam": [0.1, 0.1]}}, ["grid.gccs.lam", "distinct"]),
    ({"grid": {"gccs.lam": ["x"]}}, ["gccs.lam", "number"]),
    ({"grid": {"batch_size": [0]}}, ["batch_size", "≥ 2"]),
    ({"settings": {"epochs": 2}, "grid": {"epochs": [1, 2]}}, ["epochs", "both fixed in settings and varied in grid"]),
    ({"settings": {"seed": 1}}, ["settings.seed", "not a training setting", "epochs"]),
    ({"settings": {"epoch": 1}}, ["settings.epoch", "allowed", "epochs"]),
    ({"settings": {"epochs": 0}}, ["epochs", "≥ 1"]),
    ({"evaluate": ["robust"]}, ["evaluate[0]", "suite = NAME or measure = NAME"]),
    ({"evaluate": [{"suite": "robust", "measure": "deepfool"}]}, ["evaluate[0]", "either suite"]),
    ({"evaluate": [{"suite": "pgd10", "epss": [0.1]}]}, ["evaluate[0]", "unknown key 'epss'", "eps, samples"]),
    ({"evaluate": [{"suite": "pgd10", "samples": 0}]}, ["evaluate[0].samples", "positive integer"]),
    ({"evaluate": [{"suite": "strong"}]}, ["suite", "'strong'", "robust", "gccs-paper"]),
    ({"evaluate": [{"suite": "pgd10", "eps": [2.0]}]}, ["eps", "[0, 1]", "pgd"]),
    ({"evaluate": [{"measure": "fab"}]}, ["evaluate[0].measure", "'fab'", "deepfool, cw, spsa-grid"]),
    ({"evaluate": [{"measure": "spsa-grid", "settings": {"iterations": [0]}}]}, ["iterations", "≥ 1"]),
    ({"baseline": "mmc"}, ["study baseline", "'mmc'", "ce, gccs"]),
    ({"claims": [{**CLAIM, "a": {"objective": "mmc"}}]}, ["claims[0].a", "exactly one cell", "selects 0"]),
    ({"grid": {"gccs.lam": [0.0, 0.2]}, "claims": [CLAIM]}, ["claims[0].a", "exactly one cell", "selects 2"]),
    ({"claims": [{**CLAIM, "b": {"objective": "ce", "lam": 0.2}}]}, ["claims[0].b", "selects 0"]),
    ({"claims": [{**CLAIM, "b": "ce"}]}, ["claims[0].b", "selects 0"]),
    ({"claims": [{**CLAIM, "expect": "better"}]}, ["claims[0]", "expect", "\"higher\" or \"lower\""]),
    ({"claims": [{k: v for k, v in CLAIM.items() if k != "metric"}]}, ["claims[0]", "metric = NAME"]),
    ({"claims": [{**CLAIM, "metric_b": 3}]}, ["claims[0]", "metric_b"]),
])
def test_every_wrong_field_is_a_config_error_naming_it_and_what_is_allowed(change, words):
    with pytest.raises(ConfigError) as caught:
        study_from_dict({**BASE, **change})
    for word in words:
        assert word in str(caught.value), str(caught.value)


def test_a_valid_definition_is_accepted_and_survives_its_own_round_trip():
    study = study_from_dict({**BASE, "grid": {"gccs.lam": [0, 0.2]}, "claims": [
        {**CLAIM, "a": {"gccs.lam": 0.2}, "b": {"gccs.lam": 0.0}}]})
    assert study.grid == {"gccs.lam": (0.0, 0.2)}  # cast by the objective's own validation
    assert study.baseline == "ce" and study.seeds == (0, 1) and study.evaluate == ()
    assert study_from_dict(json.loads(json.dumps(study.to_dict()))) == study
    assert study.with_(seeds=[3]).seeds == (3,)
    with pytest.raises(ConfigError, match="study seeds"):
        study.with_(seeds=[3, 3])


def test_a_name_with_a_trailing_newline_is_refused():
    with pytest.raises(ConfigError, match="study name"):
        study_from_dict({**BASE, "name": "tiny\n"})


@pytest.mark.parametrize("grid", [{"gccs.lam": [0, 0.0]}, {"batch_size": [200, 200.0]}])
def test_grid_values_equal_after_casting_are_refused(grid):
    with pytest.raises(ConfigError, match="distinct"):
        study = study_from_dict({**BASE, "grid": grid})
        labels = [c["label"] for c in planned_cells(study, "digits")]
        assert len(set(labels)) == len(labels), labels  # (what happens instead: duplicated cells)


def test_an_evaluate_eps_string_is_parsed_or_refused_with_a_config_error():
    try:
        study = study_from_dict({**BASE, "evaluate": [{"suite": "pgd10", "eps": "0.05,0.1"}]})
    except ConfigError:
        return
    assert study.evaluate[0]["eps"] == [0.05, 0.1]


@pytest.mark.parametrize("change", [
    pytest.param({"claims": dict(CLAIM)}, id="[claims]-table-instead-of-[[claims]]"),
    pytest.param({"grid": [{"gccs.lam": [0.0, 0.2]}]}, id="[[grid]]-array-instead-of-[grid]"),
    pytest.param({"settings": [{"epochs": 2}]}, id="[[settings]]-array-instead-of-[settings]"),
    pytest.param({"datasets": 5}, id="datasets-not-a-list"),
    pytest.param({"seeds": [[0]]}, id="seeds-nested-list"),
    pytest.param({"evaluate": [{"suite": ["robust"]}]}, id="suite-a-list"),
    pytest.param({"paper": {"metric": "r_ab"}}, id="[paper]-table-instead-of-[[paper]]"),
])
def test_a_field_of_the_wrong_type_is_a_config_error(change):
    with pytest.raises(ConfigError):
        study_from_dict({**BASE, **change})


@pytest.mark.parametrize("paper", [
    pytest.param([{"cell": {"objective": "gccs"}, "metric": "clean_accuracy"}], id="no-values"),
    pytest.param([{"cell": {"objective": "gccs"}, "metric": "clean_accuracy", "values": {}}], id="empty-values"),
])
def test_a_paper_entry_without_numbers_is_refused_when_the_study_is_defined(paper):
    try:
        study = study_from_dict({**BASE, "paper": paper})
    except ConfigError:
        return
    study_results(study, {})  # what `study show` calls: must not crash on an accepted definition
    pytest.fail("a paper entry without printed numbers was accepted")


@pytest.mark.parametrize("change", [
    pytest.param({"claims": [{**CLAIM, "metric_B": "r_ab"}]}, id="claim-key-typo"),
    pytest.param({"objectives": ["ce", {"name": "gccs", "parms": {"lam": 0.3}}]}, id="objective-table-key-typo"),
    pytest.param({"objectives": ["ce", {"name": "gccs", "params": {"lam": 0.3}}], "grid": {"gccs.lam": [0.0, 0.2]}},
                 id="constant-fixed-and-varied"),
])
def test_typos_and_clashes_inside_claims_and_objectives_are_refused(change):
    with pytest.raises(ConfigError):
        study_from_dict({**BASE, **change})


def test_a_toml_file_loads_and_bad_files_say_what_is_wrong(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text("""
name = "mine"
title = "λ on digits"
objectives = ["ce", "gccs"]
seeds = [0, 1]
evaluate = [{suite = "pgd10", eps = [0.1], samples = 30}]

[settings]
epochs = 2

[grid]
"gccs.lam" = [0.0, 0.2]

[[claims]]
text = "λ 0.2 beats λ 0"
metric = "pgd-10 @ ε 0.1"
a = {"gccs.lam" = 0.2}
b = {"gccs.lam" = 0.0}
expect = "higher"

[[paper]]
cell = {objective = "gccs", "gccs.lam" = 0.2}
metric = "clean_accuracy"
values = {mnist = 0.9958}
""", encoding="utf-8")
    study = load_study(str(path))
    assert study.name == "mine" and study.title == "λ on digits" and study.settings == {"epochs": 2}
    assert study.grid == {"gccs.lam": (0.0, 0.2)}
    assert study.evaluate == ({"suite": "pgd10", "eps": [0.1], "samples": 30},)
    assert study.claims[0]["metric"] in producible_metrics(study)
    assert [c["label"] for c in planned_cells(study, "digits")] == ["CE", "GCCS · lam 0", "GCCS · lam 0.2"]

    broken = tmp_path / "broken.toml"
    broken.write_text('name = "x"\nobjectives = [\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_study(str(broken))
    assert "not valid TOML" in str(caught.value) and str(broken) in str(caught.value)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"name = \"\xff\xfe\"\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_study(str(binary))
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('name = "x"\nobjectives = ["xent"]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="study objectives"):
        load_study(str(wrong))
    with pytest.raises(ConfigError) as caught:
        load_study(str(tmp_path / "missing.toml"))
    assert "no such file" in str(caught.value)
    assert all(name in str(caught.value) for name in REPRODUCTIONS)


# --- 2. the built-in reproductions ------------------------------------------------------------------------
def test_there_are_eleven_built_ins_named_as_their_keys():
    assert len(REPRODUCTIONS) == 11
    assert all(d["name"] == name and d["title"] for name, d in REPRODUCTIONS.items())


@pytest.mark.parametrize("name", list(REPRODUCTIONS))
def test_every_built_in_loads_and_its_claims_use_metrics_its_evaluations_give(name):
    study = load_study(name)
    assert study.name == name
    metrics = producible_metrics(study)
    for claim in study.claims:
        assert claim["metric"] in metrics, (claim["text"], claim["metric"], sorted(metrics))
        assert claim.get("metric_b", claim["metric"]) in metrics, (claim["text"], claim["metric_b"])
    for printed in study.paper:  # a printed number under a metric no run has would never be shown
        assert printed["metric"] in metrics, (printed["metric"], sorted(metrics))
        cells = [c for c in planned_cells(study, "digits")
                 if all(c["settings"].get(k) == v for k, v in printed["cell"].items() if k != "objective")
                 and printed["cell"].get("objective", c["objective"]) == c["objective"]]
        assert len(cells) == 1, printed["cell"]
    # what the store keeps (a JSON definition) gives the same study and so the same runs
    again = study_from_dict(json.loads(json.dumps(study.to_dict())))
    assert again == study
    assert [r["run_id"] for r in planned_runs(again)] == [r["run_id"] for r in planned_runs(study)]
    results = study_results(study, {})
    assert len(results["missing"]) == results["runs"] == len(planned_runs(study))
    assert len(results["claims"]) == len(study.claims) * len(study.datasets)
    assert all(c["verdict"] == "no shared seed: no verdict" for c in results["claims"])


# --- 3. the planned runs and their training jobs ---------------------------------------------------------
def test_an_objective_constant_axis_varies_only_its_objective_and_jobs_have_distinct_objectives():
    study = study_from_dict({**BASE, "seeds": [0, 1], "grid": {"gccs.lam": [0, 0.2]}, "settings": {"epochs": 3}})
    cells = planned_cells(study, "digits")
    assert [(c["objective"], c["settings"], c["label"]) for c in cells] == [
        ("ce", {}, "CE"), ("gccs", {"gccs.lam": 0.0}, "GCCS · lam 0"), ("gccs", {"gccs.lam": 0.2}, "GCCS · lam 0.2")]
    assert [c["config"].objectives[0].params.get("lam") for c in cells] == [None, 0.0, 0.2]
    runs = planned_runs(study)
    assert [(r["cell"], r["seed"]) for r in runs] == [(i, s) for i in range(3) for s in (0, 1)]
    assert len({r["run_id"] for r in runs}) == 6
    jobs = training_jobs(runs)
    assert len(jobs) == 4  # per seed: CE + GCCS λ 0 in lockstep, GCCS λ 0.2 alone
    for job in jobs:
        assert len({o.name for o in job.objectives}) == len(job.objectives)
    assert sorted(job.run_id(o) for job in jobs for o in job.objectives) == sorted(r["run_id"] for r in runs)
    assert {job.seed for job in jobs} == {0, 1} and {job.epochs for job in jobs} == {3}


def test_a_setting_axis_varies_every_objective():
    study = study_from_dict({**BASE, "seeds": [0], "grid": {"batch_size": [100, 200]}})
    cells = planned_cells(study, "digits")
    assert [(c["objective"], c["settings"]["batch_size"]) for c in cells] == [
        ("ce", 100), ("ce", 200), ("gccs", 100), ("gccs", 200)]
    jobs = training_jobs(planned_runs(study))
    assert sorted((j.batch_size, [o.name for o in j.objectives]) for j in jobs) == [
        (100, ["ce", "gccs"]), (200, ["ce", "gccs"])]
    # each cell's gain is over CE at the same batch size
    accuracy = {"CE · batch_size 100": 0.5, "CE · batch_size 200": 0.9, "GCCS · batch_size 100": 0.6,
                "GCCS · batch_size 200": 0.95}
    labels = [c["label"] for c in cells]
    results = study_results(study, {r["run_id"]: {"clean_accuracy": accuracy[labels[r["cell"]]]}
                                    for r in planned_runs(study)})
    by_label = cells_by_label(results)
    assert by_label["GCCS · batch_size 100"]["settings"] == {"batch_size": 100}
    for size, gain in ((100, 0.1), (200, 0.05)):
        cell = by_label[f"GCCS · batch_size {size}"]
        assert cell["baseline"] == f"CE · batch_size {size}"
        assert cell["gain"]["clean_accuracy"]["mean_difference"] == pytest.approx(gain)
        assert cell["gain"]["clean_accuracy"]["verdict"] == "one seed: no verdict"


def test_run_ids_are_those_the_train_command_gives_for_the_same_settings():
    study = study_from_dict({**BASE, "seeds": [0, 1], "settings": {"epochs": 3}, "grid": {"gccs.lam": [0.1, 0.2]}})
    ids = {(study_results(study, {})["cells"][r["cell"]]["label"], r["seed"]): r["run_id"] for r in planned_runs(study)}
    quick = preset("quick", ["ce"], epochs=3, seed=1)
    assert ids[("CE", 1)] == quick.run_id(quick.objectives[0])
    for lam in ("0.1", "0.2"):
        args = parser().parse_args(["train", "--objective", "ce", "--objective", "gccs", "--epochs", "3",
                                    "--seed", "0", "--param", f"gccs.lam={lam}"])
        config = build_config(args)
        assert ids[("CE", 0)] == config.run_id(config.objectives[0])
        assert ids[(f"GCCS · lam {lam}", 0)] == config.run_id(config.objectives[1])
    # another dataset trains under its own preset
    fm = planned_runs(study.with_(datasets=["fashion-mnist"], seeds=[0]))[0]
    fquick = preset("fmnist-quick", ["ce"], epochs=3, seed=0)
    assert fm["run_id"] == fquick.run_id(fquick.objectives[0])
    assert fm["run_id"] != ids[("CE", 0)]


@pytest.mark.parametrize("objective", [{"name": "mat"}, {"name": "mat", "params": {"variant": "ftc"}}])
def test_a_study_trains_under_the_preset_s_objective_constants_as_train_does(objective):
    study = study_from_dict({**BASE, "objectives": ["ce", objective], "seeds": [1], "settings": {"epochs": 3}})
    mat = planned_runs(study)[1]
    quick = preset("quick", ["mat"], epochs=3, seed=1)
    expected = ObjectiveSpec("mat", {**quick.objectives[0].params, **objective.get("params", {})})
    assert mat["config"].objectives[0].params["beta"] == 0.5 and mat["config"].objectives[0].params["bibo_eps"] == 0.1
    assert mat["run_id"] == quick.run_id(expected)


# --- 4. cells, gains, paper numbers and verdicts on numbers made by hand ----------------------------------
HAND = {**BASE, "name": "hand", "seeds": [0, 1, 2], "grid": {"gccs.lam": [0.0, 0.2]},
        "paper": [{"cell": {"objective": "gccs", "gccs.lam": 0.2}, "metric": "clean_accuracy",
                   "values": {"mnist": 0.9958, "cifar10": 0.8297}},
                  {"cell": {"objective": "ce"}, "metric": "clean_accuracy",
                   "values": {"mnist": 0.9954, "fashion-mnist": 0.91}}],
        "claims": [{"text": "up", "metric": "clean_accuracy", "a": {"gccs.lam": 0.2}, "b": {"gccs.lam": 0.0},
                    "expect": "higher", "paper": {"mnist": 0.0038}},
                   {"text": "down", "metric": "r_ab", "a": {"gccs.lam": 0.2}, "b": {"objective": "ce"},
                    "expect": "higher"},
                   {"text": "noise", "metric": "macro_f1", "a": {"gccs.lam": 0.2}, "b": {"gccs.lam": 0.0},
                    "expect": "higher"},
                   {"text": "lower as expected", "metric": "r_ab", "a": {"gccs.lam": 0.2}, "b": {"objective": "ce"},
                    "expect": "lower"},
                   {"text": "two metrics of one cell", "metric": "pgd", "metric_b": "adaptive",
                    "a": {"gccs.lam": 0.2}, "b": {"gccs.lam": 0.2}, "expect": "higher"}]}
# per cell and seed: clean_accuracy, r_ab, macro_f1, pgd, adaptive
NUMBERS = {
    "CE": [(0.50, 5.0, 0.50, 0.1, 0.1), (0.70, 5.2, 0.70, 0.1, 0.1), (0.90, 5.1, 0.90, 0.1, 0.1)],
    "GCCS · lam 0": [(0.51, 2.0, 0.60, 0.1, 0.1), (0.71, 2.0, 0.90, 0.1, 0.1), (0.91, 2.0, 0.60, 0.1, 0.1)],
    "GCCS · lam 0.2": [(0.56, 3.0, 0.70, 0.40, 0.10), (0.761, 3.1, 0.80, 0.50, 0.20), (0.959, 3.2, 0.61, 0.45, 0.14)],
}


def hand_values(study, numbers=NUMBERS):
    labels = [c["label"] for c in planned_cells(study, study.datasets[0])]
    values = {}
    for run in planned_runs(study):
        label = labels[run["cell"] % len(labels)]
        row = numbers[label][study.seeds.index(run["seed"])]
        values[run["run_id"]] = dict(zip(("clean_accuracy", "r_ab", "macro_f1", "pgd", "adaptive"), row))
    return values


def test_verdicts_follow_the_paired_differences_and_the_expected_direction():
    study = study_from_dict(HAND)
    results = study_results(study, hand_values(study))
    claims = {c["text"]: c for c in results["claims"]}
    assert claims["up"]["verdict"] == "reproduced"  # +0.05 ± 0.001 seed by seed
    assert claims["up"]["mean_difference"] == pytest.approx(0.05, abs=1e-9)
    assert claims["up"]["seeds"] == [0, 1, 2] and claims["up"]["paper_difference"] == {"mnist": 0.0038}
    diffs = [0.05, 0.051, 0.049]
    assert claims["up"]["ci95"] == pytest.approx(stats.t.ppf(0.975, 2) * stats.tstd(diffs) / math.sqrt(3))
    assert claims["down"]["verdict"] == "not reproduced"  # GCCS λ 0.2's r_ab is 2 below CE's
    assert claims["down"]["mean_difference"] == pytest.approx(-2.0)
    assert claims["noise"]["verdict"] == "within noise"  # +0.1, −0.1, +0.01
    assert claims["lower as expected"]["verdict"] == "reproduced"
    two = claims["two metrics of one cell"]
    assert (two["metric"], two["metric_b"], two["a"], two["b"]) == ("pgd", "adaptive", "GCCS · lam 0.2", "GCCS · lam 0.2")
    assert two["mean_difference"] == pytest.approx((0.30 + 0.30 + 0.31) / 3) and two["verdict"] == "reproduced"
    assert results["missing"] == [] and results["runs"] == 9
    rows = {r["claim"]: r for r in claim_rows(results)}
    assert rows["two metrics of one cell"]["metric"] == "pgd vs adaptive"
    assert rows["up"]["verdict"] == "reproduced" and rows["up"]["paper's difference"] == "mnist: +0.0038"


def test_one_seed_gives_no_verdict_and_missing_runs_are_listed():
    one = study_from_dict({**HAND, "seeds": [0]})
    assert {c["verdict"] for c in study_results(one, hand_values(one))["claims"]} == {"one seed: no verdict"}

    study = study_from_dict(HAND)
    values = hand_values(study)
    runs = planned_runs(study)
    gone = next(r for r in runs if r["cell"] == 2 and r["seed"] == 1)
    del values[gone["run_id"]]
    results = study_results(study, values)
    assert results["missing"] == [{"cell": "GCCS · lam 0.2", "dataset": "digits", "seed": 1, "run_id": gone["run_id"]}]
    cell = cells_by_label(results)["GCCS · lam 0.2"]
    assert cell["n"] == 2 and cell["run_ids"][1] == gone["run_id"]
    # a mean over a silent subset of the seeds is never shown; the claim pairs the seeds both sides have
    assert cell["metrics"]["clean_accuracy"]["mean"] is None and cell["metrics"]["clean_accuracy"]["missing"] == 1
    up = next(c for c in results["claims"] if c["text"] == "up")
    assert up["seeds"] == [0, 2]
    assert study_results(study, {})["missing"].__len__() == 9


def test_gains_over_the_baseline_are_paired_by_seed_and_paper_numbers_name_their_dataset():
    study = study_from_dict(HAND)
    results = study_results(study, hand_values(study))
    cells = cells_by_label(results)
    ce, lam0, lam2 = cells["CE"], cells["GCCS · lam 0"], cells["GCCS · lam 0.2"]
    assert ce["gain"] == {} and "baseline" not in ce
    assert lam2["baseline"] == "CE" and lam0["baseline"] == "CE"
    gain = lam0["gain"]["clean_accuracy"]
    assert gain["seeds"] == [0, 1, 2] and gain["mean_difference"] == pytest.approx(0.01)
    # paired by seed: +0.01 at every seed, so CE's seed-to-seed spread (0.5 … 0.9) cancels; unpaired the
    # interval would be about ±0.5 and the verdict within noise
    assert gain["ci95"] == pytest.approx(0, abs=1e-9) and gain["verdict"] == "higher"
    assert lam2["gain"]["clean_accuracy"]["mean_difference"] == pytest.approx(0.06)
    r_gain = lam0["gain"]["r_ab"]
    assert r_gain["mean_difference"] == pytest.approx(-3.1) and r_gain["verdict"] == "lower"
    assert ce["metrics"]["clean_accuracy"]["mean"] == pytest.approx(0.7)
    assert ce["metrics"]["clean_accuracy"]["ci95"] == pytest.approx(stats.t.ppf(0.975, 2) * 0.2 / math.sqrt(3))
    assert ce["values"]["clean_accuracy"] == {0: 0.5, 1: 0.7, 2: 0.9}
    # the paper printed no digits numbers: the first dataset it printed, named
    assert lam2["paper"] == {"clean_accuracy": {"dataset": "mnist", "value": 0.9958}}
    assert ce["paper"] == {"clean_accuracy": {"dataset": "mnist", "value": 0.9954}}
    assert lam0["paper"] == {}
    # on a dataset it did print, that one; claims and gains are per dataset
    both = study.with_(datasets=["digits", "fashion-mnist"])
    res = study_results(both, hand_values(both))
    fm = {c["label"]: c for c in res["cells"] if c["dataset"] == "fashion-mnist"}
    assert fm["CE"]["paper"] == {"clean_accuracy": {"dataset": "fashion-mnist", "value": 0.91}}
    assert [c["dataset"] for c in res["claims"]] == ["digits"] * 5 + ["fashion-mnist"] * 5
    assert fm["GCCS · lam 0.2"]["gain"]["clean_accuracy"]["mean_difference"] == pytest.approx(0.06)


def test_the_tables_show_every_cell_metric_paper_number_gain_and_claim():
    study = study_from_dict(HAND)
    results = study_results(study, hand_values(study))
    rows = result_rows(results)
    assert [r["cell"] for r in rows] == ["CE", "GCCS · lam 0", "GCCS · lam 0.2"]
    assert list(rows[0])[:4] == ["dataset", "cell", "n", "clean_accuracy"]
    assert rows[0]["clean_accuracy · paper (mnist)"] == "0.9954" and rows[1]["clean_accuracy · paper (mnist)"] == ""
    assert rows[0]["clean_accuracy"].startswith("0.7000 ± ")
    assert rows[1]["r_ab · gain over CE"].startswith("-3.10 ± ") and rows[1]["r_ab · gain over CE"].endswith("(lower)")
    back = list(csv.DictReader(io.StringIO(to_csv(rows))))
    assert back == rows
    markdown = to_markdown(rows).splitlines()
    assert markdown[0].startswith("| dataset | cell | n | clean_accuracy |") and len(markdown) == 2 + len(rows)
    latex = to_latex(claim_rows(results), "λ & co")
    assert "\\begin{tabular}{lllllll}" in latex and "\\caption{$\\lambda$ \\& co}" in latex
    assert latex.count("\\\\") == 1 + len(results["claims"])


# --- 5. a real tiny study, run locally --------------------------------------------------------------------
@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("local") / "store"
    study = study_from_dict(TINY)
    store = RunStore(path)
    events = []
    results = run_study(study, store, threads=1, on_event=events.append)
    created = {r["run_id"]: r["created"] for r in store.list_runs()}
    store.close()
    return types.SimpleNamespace(path=path, study=study, results=results, events=events, created=created)


def copy_of(local_run, tmp_path):
    shutil.copytree(local_run.path, tmp_path / "store")
    return RunStore(tmp_path / "store")


def test_a_local_run_trains_every_run_once_and_summarises_each_cell(local_run):
    study, results, events = local_run.study, local_run.results, local_run.events
    runs = planned_runs(study)
    assert events[0] == {"type": "study-start", "runs": 4, "todo": 4}
    progress = [e for e in events if e["type"] == "study-progress"]
    assert [e["done"] for e in progress] == [1, 2, 3, 4] and {e["status"] for e in progress} == {"done"}
    assert sorted(e["run_id"] for e in progress) == sorted(r["run_id"] for r in runs)
    assert progress[-1]["eta"] == 0
    assert set(local_run.created) == {r["run_id"] for r in runs}
    assert results["failed"] == [] and results["missing"] == [] and results["runs"] == 4
    store = RunStore(local_run.path)
    try:
        for cell in results["cells"]:
            assert cell["n"] == 2 and cell["seeds"] == [0, 1]
            assert set(cell["metrics"]) == producible_metrics(study)  # the names run_values really gives
            for seed, run_id in zip(cell["seeds"], cell["run_ids"]):
                record = store.get_run(run_id)
                assert record["settings"]["seed"] == seed and record["settings"]["epochs"] == 2
                assert record["objective"] == cell["objective"]
                assert cell["values"]["clean_accuracy"][seed] == pytest.approx(record["final"]["test_acc"])
                assert cell["values"]["r_ab"][seed] == pytest.approx(record["final"]["r_ab"])
                for metric in ("pgd-10 @ ε 0.1", "adaptive-pgd-10 @ ε 0.1", "margin-pgd-10 @ ε 0.1"):
                    value = cell["values"][metric][seed]
                    assert 0 <= value <= 1 and value * 30 == pytest.approx(round(value * 30))  # of 30 images
                assert cell["values"]["deepfool ρ"][seed] is None or cell["values"]["deepfool ρ"][seed] > 0
            mean = cell["metrics"]["clean_accuracy"]
            assert mean["mean"] == pytest.approx(sum(cell["values"]["clean_accuracy"].values()) / 2)
        gccs = cells_by_label(results)["GCCS"]
        assert gccs["paper"] == {"clean_accuracy": {"dataset": "mnist", "value": 0.9958}}
        assert set(gccs["gain"]) == set(gccs["metrics"]) and gccs["baseline"] == "CE"
        assert [c["text"] for c in results["claims"]] == ["GCCS beats CE", "PGD is weaker than the adaptive attack"]
        for claim in results["claims"]:
            assert claim["seeds"] == [0, 1] and claim["verdict"] in VERDICTS
        kept = store.get_study("tiny")
        assert kept["definition"] == study.to_dict() and set(kept["values"]) == set(local_run.created)
        assert kept["seconds"] > 0
    finally:
        store.close()


def test_a_second_run_reuses_every_run_and_every_value(local_run, tmp_path):
    store = copy_of(local_run, tmp_path)
    try:
        events = []
        again = run_study(local_run.study, store, threads=1, on_event=events.append)
        assert events == [{"type": "study-start", "runs": 4, "todo": 0}]
        assert again["cells"] == local_run.results["cells"] and again["claims"] == local_run.results["claims"]
        assert {r["run_id"]: r["created"] for r in store.list_runs()} == local_run.created
        assert store.get_study("tiny")["seconds"] == pytest.approx(local_run.results["seconds"])
        # another study over the same runs trains nothing: every run is reused, its evaluations cached
        events = []
        other = run_study(local_run.study.with_(name="tiny-again"), store, threads=1, on_event=events.append)
        assert events[0]["todo"] == 4
        assert [e["status"] for e in events[1:]] == ["reused"] * 4
        assert [c["values"] for c in other["cells"]] == [c["values"] for c in local_run.results["cells"]]
        assert {r["run_id"]: r["created"] for r in store.list_runs()} == local_run.created
        assert [s["name"] for s in store.list_studies()] == ["tiny", "tiny-again"]
    finally:
        store.close()


def test_stored_values_survive_reopening_and_study_show_prints_the_same_cells(local_run, capsys):
    store = RunStore(local_run.path)
    try:
        values = stored_values(store, local_run.study)
        assert set(values) == set(local_run.created)
        assert study_results(local_run.study, values)["cells"] == local_run.results["cells"]
    finally:
        store.close()
    code, out, err = run_cli(capsys, "--store", str(local_run.path), "study", "show", "tiny")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["study"] == "tiny" and shown["missing"] == [] and shown["claims"] == local_run.results["claims"]
    assert [(c["label"], c["run_ids"], c["n"], c["metrics"], c["paper"]) for c in shown["cells"]] == [
        (c["label"], c["run_ids"], c["n"], c["metrics"], c["paper"]) for c in local_run.results["cells"]]
    code, out, _ = run_cli(capsys, "--store", str(local_run.path), "study", "list")
    stored = json.loads(out)["stored"]
    assert [(s["name"], s["title"], s["runs"]) for s in stored] == [("tiny", "a tiny study", 4)]


def test_a_run_whose_weights_changed_shows_no_stale_values_and_is_evaluated_again(local_run, tmp_path, capsys):
    store = copy_of(local_run, tmp_path)
    try:
        cell = cells_by_label(local_run.results)["GCCS"]
        run_id = cell["run_ids"][1]
        old = store.checkpoint_digest(run_id)
        record, checkpoint, latents = store.get_run(run_id), store.load_checkpoint(run_id), store.get_latents(run_id)
        name, weight = next((k, v) for k, v in checkpoint["model"].items() if v.is_floating_point())
        checkpoint["model"][name] = weight + 0.5
        store.save_run(record, checkpoint, latents)  # the same run id, other weights
        assert store.checkpoint_digest(run_id) != old
        values = stored_values(store, local_run.study)
        assert run_id not in values and len(values) == 3
        results = study_results(local_run.study, values)
        assert cells_by_label(results)["GCCS"]["n"] == 1
        assert [m["run_id"] for m in results["missing"]] == [run_id]
        code, out, err = run_cli(capsys, "--store", str(tmp_path / "store"), "study", "show", "tiny")
        assert code == 0, err
        shown = json.loads(out)
        assert [m["run_id"] for m in shown["missing"]] == [run_id]
        assert next(c for c in shown["cells"] if c["label"] == "GCCS")["n"] == 1
        # the next run evaluates the run it finds (not retrained: it is stored) and keeps its new numbers
        events = []
        again = run_study(local_run.study, store, threads=1, on_event=events.append)
        assert events[0]["todo"] == 1 and [(e["run_id"], e["status"]) for e in events[1:]] == [(run_id, "reused")]
        assert store.get_run(run_id)["created"] == local_run.created[run_id]
        assert store.get_study("tiny")["values"][run_id]["checkpoint"] == store.checkpoint_digest(run_id)
        assert again["missing"] == [] and cells_by_label(again)["GCCS"]["n"] == 2
    finally:
        store.close()


def test_a_deleted_run_is_trained_again_to_the_same_numbers(local_run, tmp_path):
    store = copy_of(local_run, tmp_path)
    try:
        cell = cells_by_label(local_run.results)["CE"]
        run_id = cell["run_ids"][0]
        assert store.delete_run(run_id)
        assert run_id not in stored_values(store, local_run.study)
        events = []
        again = run_study(local_run.study, store, threads=1, on_event=events.append)
        assert [(e["run_id"], e["status"]) for e in events[1:]] == [(run_id, "done")]
        assert store.get_run(run_id)["created"] > local_run.created[run_id]
        # trained alone now, in lockstep with GCCS before: the same weights, so the same numbers
        assert again["cells"] == local_run.results["cells"]
    finally:
        store.close()


def test_other_evaluations_under_the_same_name_reuse_the_runs_but_not_the_values(local_run, tmp_path):
    store = copy_of(local_run, tmp_path)
    try:
        plain = local_run.study.with_(evaluate=[], claims=[TINY["claims"][0]])
        assert stored_values(store, plain) == {}  # computed by other evaluations: not these numbers
        events = []
        results = run_study(plain, store, threads=1, on_event=events.append)
        assert events[0]["todo"] == 4 and [e["status"] for e in events[1:]] == ["reused"] * 4
        assert {r["run_id"]: r["created"] for r in store.list_runs()} == local_run.created
        for cell, before in zip(results["cells"], local_run.results["cells"]):
            assert set(cell["metrics"]) == {"clean_accuracy", "macro_f1", "r_ab"}
            assert cell["metrics"]["r_ab"] == before["metrics"]["r_ab"]
        assert set(stored_values(store, plain)) == set(local_run.created)
        save_values(store, plain, {})  # adds nothing, forgets nothing
        assert set(stored_values(store, plain)) == set(local_run.created)
    finally:
        store.close()


# --- 6. the Ray executor ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_run(local_run, tmp_path_factory):
    path = tmp_path_factory.mktemp("ray") / "store"
    store = RunStore(path)
    events = []
    try:
        results = run_study(local_run.study, store, executor="ray", cpus=2, threads=1, on_event=events.append)
    finally:
        store.close()
    return types.SimpleNamespace(path=path, results=results, events=events)


@pytest.mark.slow
def test_the_ray_executor_gives_the_local_cells_and_claims(local_run, ray_run):
    results = ray_run.results
    assert results["failed"] == [] and results["missing"] == []
    progress = [e for e in ray_run.events if e["type"] == "study-progress"]
    assert len(progress) == 4 and {e["status"] for e in progress} == {"done"}
    for ours, theirs in zip(results["cells"], local_run.results["cells"]):
        assert ours["label"] == theirs["label"] and ours["run_ids"] == theirs["run_ids"]
        assert ours["values"] == theirs["values"]
        assert ours["metrics"] == theirs["metrics"] and ours["gain"] == theirs["gain"]
    assert results["claims"] == local_run.results["claims"]


@pytest.mark.slow
def test_the_ray_store_checks_clean_and_holds_every_run_with_its_results(local_run, ray_run):
    report = check_store(ray_run.path)
    assert report["clean"], report
    assert report["runs"] == report["intact"] == 4
    store = RunStore(ray_run.path)
    try:
        assert {r["run_id"] for r in store.list_runs()} == set(local_run.created)
        assert set(stored_values(store, local_run.study)) == set(local_run.created)
        for run_id in local_run.created:
            assert len(store.list_results(run_id)) > 0  # the task's cached evaluations came back with the run
    finally:
        store.close()


@pytest.mark.slow
def test_a_failing_ray_task_is_retried_once_then_reported_and_the_study_goes_on(tmp_path):
    """MNIST is not on this machine: each task fails where it loads the data, on the worker."""
    study = study_from_dict({"name": "no-data", "objectives": ["ce"], "datasets": ["mnist"], "seeds": [0, 1],
                             "settings": {"epochs": 1}, "evaluate": []})
    store = RunStore(tmp_path / "store")
    events = []
    try:
        results = run_study(study, store, executor="ray", cpus=2, threads=1, data_dir=tmp_path / "empty",
                            on_event=events.append)
    finally:
        store.close()
    statuses = sorted(e["status"] for e in events if e["type"] == "study-progress")
    assert statuses == ["failed", "failed", "retrying", "retrying"]
    assert sorted(f["seed"] for f in results["failed"]) == [0, 1]
    assert all(f["attempts"] == 2 and "mnist" in f["error"].lower() for f in results["failed"]), results["failed"]
    assert len(results["missing"]) == 2 and results["cells"][0]["n"] == 0


# --- 7. a run carried from one store to another -----------------------------------------------------------
@pytest.fixture
def two_stores(local_run, tmp_path):
    """The local run's store (the source of exports) and an empty target store, closed afterwards."""
    source, target = RunStore(local_run.path), RunStore(tmp_path / "target")
    yield source, target
    source.close()
    target.close()


def test_export_and_import_keep_the_record_weights_latents_and_cached_results(local_run, two_stores, tmp_path):
    source, target = two_stores
    run_id = cells_by_label(local_run.results)["GCCS"]["run_ids"][0]
    blob = source.export_run(run_id)
    assert isinstance(blob, bytes)
    assert target.import_run(blob) == run_id
    # (records hold arrays: compared as the store encodes them, byte for byte)
    assert codec.encode(target.get_run(run_id)) == codec.encode(source.get_run(run_id))
    assert target.checkpoint_digest(run_id) == source.checkpoint_digest(run_id)
    ours, theirs = target.load_checkpoint(run_id), source.load_checkpoint(run_id)
    for part in ("model", "objective"):
        assert set(ours[part]) == set(theirs[part])
        for key, tensor in theirs[part].items():
            assert torch.equal(ours[part][key], tensor), key
    lat_ours, lat_theirs = target.get_latents(run_id), source.get_latents(run_id)
    for key in ("z", "y", "indices"):
        assert (lat_ours[key] == lat_theirs[key]).all()
    keys = [k[len("result:"):] for k in source.keys() if k.startswith(f"result:{run_id}:")]
    assert keys and [k for k in target.keys() if k.startswith("result:")] == [f"result:{k}" for k in keys]
    for key in keys:
        assert target.get_result(key) is not None
        assert codec.encode(target.get_result(key)) == codec.encode(source.get_result(key))
    assert len(target.list_results(run_id)) == len(source.list_results(run_id))
    # the target can evaluate it from its cache: the study's values for it are the source's
    assert run_values(target, run_id, local_run.study.evaluate) == cells_value(local_run.results, run_id)
    assert check_store(tmp_path / "target")["clean"]


def cells_value(results, run_id):
    cell = next(c for c in results["cells"] if run_id in c["run_ids"])
    seed = cell["seeds"][cell["run_ids"].index(run_id)]
    return {m: per_seed[seed] for m, per_seed in cell["values"].items()}


def test_damaged_or_foreign_exports_are_refused_and_store_nothing(local_run, two_stores):
    source, target = two_stores
    run_id = cells_by_label(local_run.results)["CE"]["run_ids"][1]
    blob = source.export_run(run_id)
    flipped = bytearray(blob)
    for position in (len(blob) // 2, len(blob) - 1, 40):
        damaged = bytearray(blob)
        damaged[position] ^= 0x01
        with pytest.raises(StoreError, match="nothing was stored"):
            target.import_run(bytes(damaged))
    flipped[len(blob) // 3] ^= 0xFF
    for bad in (bytes(flipped), blob[:-10], b"", b"not an export", codec.encode({"bundle": 2})):
        with pytest.raises(StoreError):
            target.import_run(bad)
    bundle = codec.decode(blob)
    key = next(iter(bundle["results"]))
    stamped = dict(bundle["results"])
    stamped[key] = {**stamped[key], "checkpoint": "0" * 64}
    with pytest.raises(StoreError, match="not computed from its checkpoint"):
        target.import_run(codec.encode({**bundle, "results": stamped}))
    other = {k.replace(run_id, "0" * 16, 1): v for k, v in bundle["results"].items()}
    with pytest.raises(StoreError, match="nothing was stored"):
        target.import_run(codec.encode({**bundle, "results": other}))
    assert not target.has_run(run_id) and target.keys() == [] and target.list_runs() == []


def test_an_export_without_its_checkpoint_is_a_store_error(local_run, two_stores):
    source, target = two_stores
    bundle = codec.decode(source.export_run(cells_by_label(local_run.results)["CE"]["run_ids"][0]))
    with pytest.raises(StoreError):
        target.import_run(codec.encode({k: v for k, v in bundle.items() if k != "checkpoint"}))


# --- 8. python -m engine study ----------------------------------------------------------------------------
def test_study_list_names_the_eleven_built_ins(tmp_path, capsys):
    code, out, err = run_cli(capsys, "--store", str(tmp_path / "store"), "study", "list")
    assert code == 0, err
    listed = json.loads(out)
    assert [b["name"] for b in listed["built_in"]] == list(REPRODUCTIONS) and len(listed["built_in"]) == 11
    assert all(b["title"] == REPRODUCTIONS[b["name"]]["title"] for b in listed["built_in"])
    assert listed["stored"] == [] and listed["problems"] == []


@pytest.mark.parametrize("args, words", [
    (["study", "run"], ["needs NAME|FILE", "gccs-table1", "pcl-ablation", "TOML"]),
    (["study", "show"], ["needs NAME|FILE"]),
    (["study", "run", "nosuch"], ["'nosuch'", "no such file", "gccs-table3", "mmc-adaptive"]),
    (["study", "run", "gccs-table3", "--seeds", "1,1"], ["--seeds", "appears twice"]),
    (["study", "run", "gccs-table3", "--seeds", "a"], ["--seeds", "'a'"]),
    (["study", "run", "gccs-table3", "--executor", "dask"], ["invalid choice: 'dask'"]),
    (["study", "run", "gccs-table3", "--threads", "0"], ["--threads", "1 … 256"]),
    (["study", "run", "EPOCHS_GRID", "--epochs", "2"], ["--epochs", "epochs-grid", "varies epochs"]),
])
def test_study_run_refuses_bad_arguments_with_exit_code_2(tmp_path, capsys, args, words):
    path = tmp_path / "epochs.toml"
    path.write_text('name = "epochs-grid"\nobjectives = ["gccs"]\nevaluate = []\n[grid]\nepochs = [1, 2]\n')
    args = [str(path) if a == "EPOCHS_GRID" else a for a in args]
    code, out, err = run_cli(capsys, "--store", str(tmp_path / "store"), *args)
    assert code == 2, (out, err)
    assert out == "" and "Traceback" not in err
    for word in words:
        assert word in err, err
    store = RunStore(tmp_path / "store")
    try:
        assert store.list_runs() == [] and store.list_studies() == []
    finally:
        store.close()


def test_study_run_then_show_prints_markdown_latex_and_csv_tables(local_run, tmp_path, capsys):
    # the tiny study's store: gccs-table3 at 2 epochs and seeds 0, 1 plans the same CE and GCCS runs
    shutil.copytree(local_run.path, tmp_path / "store")
    store = str(tmp_path / "store")
    code, out, err = run_cli(capsys, "--store", store, "study", "run", "gccs-table3", "--epochs", "2", "--seeds", "0,1",
                             "--threads", "1")
    assert code == 0, err
    assert err.count(" reused") == 4 and " done" not in err  # progress on stderr: nothing trained again
    ran = json.loads(out)
    assert ran["study"] == "gccs-table3" and ran["missing"] == [] and len(ran["cells"]) == 2
    assert [c["run_ids"] for c in ran["cells"]] == [c["run_ids"] for c in local_run.results["cells"]]
    assert [c["metrics"]["r_ab"] for c in ran["cells"]] == [c["metrics"]["r_ab"] for c in local_run.results["cells"]]
    (claim,) = ran["claims"]
    assert claim["text"] == "GCCS separates the classes more than CE" and claim["verdict"] in VERDICTS

    code, out, err = run_cli(capsys, "--store", store, "study", "show", "gccs-table3", "--table", "markdown")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("| dataset | cell | n | clean_accuracy |") and "r_ab · paper (mnist)" in lines[0]
    assert lines[1].startswith("|---|---|")
    rows = [line for line in lines if line.startswith("| digits |")]
    cells = {c["label"]: c for c in ran["cells"]}
    ce = next(r for r in rows if r.startswith("| digits | CE | 2 |"))
    gccs = next(r for r in rows if r.startswith("| digits | GCCS | 2 |"))
    assert f"{cells['CE']['metrics']['clean_accuracy']['mean']:.4f} ± " in ce and "| 3.12 |" in ce
    assert f"{cells['GCCS']['metrics']['r_ab']['mean']:.2f} ± " in gccs and "| 18.5 |" in gccs
    assert "| dataset | claim | metric |" in out
    claim_line = next(r for r in rows if "GCCS separates the classes more than CE" in r)
    assert f"| {claim['verdict']} |" in claim_line and "mnist: +15.38" in claim_line

    code, out, err = run_cli(capsys, "--store", store, "study", "show", "gccs-table3", "--table", "latex")
    assert code == 0, err
    assert out.count("\\begin{tabular}") == 2 and out.count("\\end{tabular}") == 2
    assert "\\caption{GCCS Table 3: class separation r\\_AB" in out and "r\\_ab $\\cdot$ paper (mnist)" in out
    assert "digits & GCCS & 2 & " in out

    code, out, err = run_cli(capsys, "--store", store, "study", "show", "gccs-table3", "--table", "csv")
    assert code == 0, err
    table = list(csv.DictReader(io.StringIO(out.split("\n\n")[0])))
    assert [(r["dataset"], r["cell"], r["n"]) for r in table] == [("digits", "CE", "2"), ("digits", "GCCS", "2")]

    code, out, _ = run_cli(capsys, "--store", store, "study", "list")
    stored = {s["name"]: s for s in json.loads(out)["stored"]}
    assert set(stored) == {"tiny", "gccs-table3"} and stored["gccs-table3"]["runs"] == 4


def test_study_show_of_a_study_never_run_lists_every_run_as_missing(tmp_path, capsys):
    code, out, err = run_cli(capsys, "--store", str(tmp_path / "store"), "study", "show", "gccs-table1")
    assert code == 0, err
    shown = json.loads(out)
    assert len(shown["cells"]) == 6 and all(c["n"] == 0 for c in shown["cells"])
    assert len(shown["missing"]) == 18 and {c["verdict"] for c in shown["claims"]} == {"no shared seed: no verdict"}


def test_a_cancelled_study_keeps_the_values_of_the_runs_it_finished(tmp_path):
    import threading

    from engine.train import Cancelled

    study = study_from_dict({**TINY, "name": "cancel-me"})
    store = RunStore(tmp_path / "store")
    cancel = threading.Event()

    def on_event(event):  # cancel as soon as the first run is done
        if event["type"] == "study-progress":
            cancel.set()

    try:
        with pytest.raises(Cancelled):
            run_study(study, store, threads=1, on_event=on_event, cancel=cancel)
        kept = stored_values(store, study)
        assert 1 <= len(kept) < len(planned_runs(study))
        events = []
        results = run_study(study, store, threads=1, on_event=events.append)  # goes on where it stopped
        assert events[0]["todo"] == len(planned_runs(study)) - len(kept) and not results["missing"]
    finally:
        store.close()
