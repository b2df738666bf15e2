"""The runs table against a store of real (tiny) runs: CE twins, the cached worst case and accuracy
alone, export."""
import csv
import io
import json

import pytest
import torch

from engine.config import ObjectiveSpec, TrainConfig
from engine.data import load_dataset
from engine.robustness import accuracy_point, attack_survivors, correct_mask
from engine.objectives import ConfigError
from engine.report import NOT_EVALUATED, cached_attacks, export_rows, runs_table, worst_case_rows
from engine.train import load_run, train_job


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """CE + GCCS (one setting), GCCS alone at another seed (no CE twin), and CE + MMC trained
    adversarially (a setting of their own), with robust accuracies cached for the plain CE run."""
    from cache import RunStore

    store = RunStore(tmp_path_factory.mktemp("report-store"))
    base = TrainConfig(epochs=2, device="cpu", latent_samples=50)
    ce, gccs = train_job(base.with_(objectives=(ObjectiveSpec("ce"), ObjectiveSpec("gccs"))), store)
    (lone,) = train_job(base.with_(seed=1, objectives=(ObjectiveSpec("gccs"),)), store)
    adv_ce, adv_mmc = train_job(base.with_(epochs=1, adv_attack="fgsm", objectives=(ObjectiveSpec("ce"),
                                                                                    ObjectiveSpec("mmc"))), store)
    data = load_dataset("digits")
    model, objective, _ = load_run(store, ce["run_id"])
    cache = {}
    # a small sample, the full split, then the full split again with other parameters (newest)
    for name, n, params in (("small", 100, {"steps": 5, "alpha": 0.01}), ("full", None, {"steps": 5, "alpha": 0.01}),
                            ("newest", None, {"steps": 2, "alpha": 0.05})):
        x, y = (data.x_test[:n], data.y_test[:n]) if n else (data.x_test, data.y_test)
        cache[name], _ = accuracy_point(store, ce["run_id"], model, objective, x, y, "pgd", params, 0.1)
    cache["fgsm"], _ = accuracy_point(store, gccs["run_id"], *load_run(store, gccs["run_id"])[:2],
                                      data.x_test[:50], data.y_test[:50], "fgsm", {}, 0.2)
    yield store, {"ce": ce, "gccs": gccs, "lone": lone, "adv_ce": adv_ce, "adv_mmc": adv_mmc}, cache
    store.close()


def by_id(rows):
    return {row["run_id"]: row for row in rows}


def test_one_row_per_run_with_its_settings_and_metrics(runs):
    store, records, _ = runs
    rows = runs_table(store)
    assert len(rows) == 5 and {r["run_id"] for r in rows} == {r["run_id"] for r in records.values()}
    gccs = by_id(rows)[records["gccs"]["run_id"]]
    assert [gccs[k] for k in ("dataset", "model", "objective", "seed", "epochs")] == ["digits", "cnn", "gccs", 0, 2]
    assert gccs["constants"] == "mu_t=70, sigma_t=1, lam=0.2, kurtosis=abs, covariance=auto"
    assert gccs["adversarial_training"] == "none" and gccs["fine_tuned_from"] is None
    final = records["gccs"]["final"]
    assert gccs["clean_acc"] == pytest.approx(final["test_acc"]) and gccs["macro_f1"] == pytest.approx(final["test_f1"])
    assert gccs["r_ab"] == pytest.approx(final["r_ab"]) and gccs["r_ab_ci95"] == pytest.approx(final["r_ab_ci"])
    assert gccs["train_seconds"] == pytest.approx(records["gccs"]["timing"]["train_seconds"])
    mmc = by_id(rows)[records["adv_mmc"]["run_id"]]
    assert mmc["adversarial_training"] == "fgsm ε=0.03 loss=adaptive clean weight=0.5"
    assert "alone_acc" not in gccs  # no attack chosen: no column for one attack alone
    assert by_id(rows)[records["lone"]["run_id"]]["worst_case_source"] == NOT_EVALUATED


def test_overhead_is_against_the_ce_run_of_the_same_setting(runs):
    store, records, _ = runs
    rows = by_id(runs_table(store))
    seconds = {name: r["timing"]["train_seconds"] for name, r in records.items()}
    gccs = rows[records["gccs"]["run_id"]]
    assert gccs["ce_run_id"] == records["ce"]["run_id"]
    assert gccs["overhead_vs_ce_pct"] == pytest.approx(100 * (seconds["gccs"] / seconds["ce"] - 1))
    assert rows[records["ce"]["run_id"]]["overhead_vs_ce_pct"] == 0.0
    # adversarially trained MMC is compared with adversarially trained CE, not with the plain one
    mmc = rows[records["adv_mmc"]["run_id"]]
    assert mmc["ce_run_id"] == records["adv_ce"]["run_id"]
    assert mmc["overhead_vs_ce_pct"] == pytest.approx(100 * (seconds["adv_mmc"] / seconds["adv_ce"] - 1))
    lone = rows[records["lone"]["run_id"]]  # another seed, no CE run of that seed stored
    assert lone["ce_run_id"] is None and lone["overhead_vs_ce_pct"] is None


def test_no_overhead_against_a_ce_run_trained_on_another_device(runs, tmp_path):
    from cache import RunStore

    store, records, _ = runs
    other = RunStore(tmp_path / "other")
    for name, device in (("ce", "cpu"), ("gccs", "cuda:0")):  # same settings, so the same run ids
        run_id = records[name]["run_id"]
        other.save_run({**records[name], "device": device}, store.load_checkpoint(run_id), store.get_latents(run_id))
    rows = by_id(runs_table(other))
    assert rows[records["gccs"]["run_id"]]["overhead_vs_ce_pct"] is None
    assert rows[records["ce"]["run_id"]]["overhead_vs_ce_pct"] == 0.0
    other.close()


def test_worst_case_is_the_per_sample_union_of_every_attack_cached_on_one_sample_set(runs):
    store, records, cache = runs
    counts = {r["run_id"]: len(store.list_results(r["run_id"])) for r in records.values()}
    rows = by_id(runs_table(store))
    # CE: both PGD settings on the full split (2 settings) beat one setting on 100 samples
    data = load_dataset("digits")
    model, objective, _ = load_run(store, records["ce"]["run_id"])
    clean = correct_mask(model, objective, data.x_test, data.y_test)
    index = clean.nonzero().flatten()
    robust = torch.zeros_like(clean)
    robust[index] = True
    for params in ({"steps": 5, "alpha": 0.01}, {"steps": 2, "alpha": 0.05}):  # as the fixture's accuracy_point
        robust[index] &= attack_survivors(model, objective, data.x_test[index], data.y_test[index], "pgd", 0.1, params)
    ce = rows[records["ce"]["run_id"]]
    assert ce["worst_case@0.1"] == pytest.approx(float(robust.float().mean()))
    assert ce["worst_case@0.1"] <= min(cache["full"]["accuracy"], cache["newest"]["accuracy"])
    assert ce["worst_case@0.2"] is None  # nothing tried at 0.2 on CE
    assert ce["worst_case_source"] == "worst case over 2 attack settings (pgd); first 450 test images; seed 0"
    gccs = rows[records["gccs"]["run_id"]]  # one attack alone is its own worst case
    assert gccs["worst_case@0.2"] == pytest.approx(cache["fgsm"]["accuracy"]) and gccs["worst_case@0.1"] is None
    assert gccs["worst_case_source"] == "worst case over 1 attack setting (fgsm); first 50 test images; seed 0"
    assert rows[records["lone"]["run_id"]]["worst_case@0.1"] is None
    # the table never attacks: nothing was added to the store
    assert counts == {r["run_id"]: len(store.list_results(r["run_id"])) for r in records.values()}


def test_worst_case_rows_for_the_start_page(runs):
    store, records, cache = runs
    rows = worst_case_rows(store, [records[n]["run_id"] for n in ("gccs", "lone")])
    gccs, lone = rows
    assert list(gccs) == ["run", "worst case @ ε 0.2", "evaluated on"]
    assert gccs["run"] == f"GCCS ({records['gccs']['run_id'][:6]})"
    assert gccs["worst case @ ε 0.2"] == pytest.approx(cache["fgsm"]["accuracy"])
    assert lone["worst case @ ε 0.2"] is None and lone["evaluated on"] == NOT_EVALUATED


def test_one_attack_alone_comes_from_the_cache_preferring_the_full_split_then_the_newest(runs):
    store, records, cache = runs
    counts = {r["run_id"]: len(store.list_results(r["run_id"])) for r in records.values()}
    rows = by_id(runs_table(store, "pgd", 0.1))
    ce = rows[records["ce"]["run_id"]]
    assert cache["newest"]["samples"] == cache["full"]["samples"] == 450 > cache["small"]["samples"]
    assert ce["alone_acc"] == pytest.approx(cache["newest"]["accuracy"])
    assert ce["alone_source"] == "steps=2, alpha=0.05; first 450 test images; seed 0"
    assert (ce["attack"], ce["eps"]) == ("pgd", 0.1)
    gccs = rows[records["gccs"]["run_id"]]
    assert gccs["alone_acc"] is None and gccs["alone_source"] == "not computed"
    assert by_id(runs_table(store, "pgd", 0.2))[records["ce"]["run_id"]]["alone_acc"] is None  # other ε
    # the table never attacks: nothing was added to the store
    assert counts == {r["run_id"]: len(store.list_results(r["run_id"])) for r in records.values()}


def test_cached_attacks_lists_the_pairs_with_a_result(runs):
    store, records, _ = runs
    assert cached_attacks(store) == [("fgsm", 0.2), ("pgd", 0.1)]
    assert cached_attacks(store, [records["ce"]["run_id"]]) == [("pgd", 0.1)]
    assert cached_attacks(store, [records["lone"]["run_id"]]) == []


def test_attack_without_eps_is_refused(runs):
    store, _, _ = runs
    with pytest.raises(ConfigError, match="attack and eps"):
        runs_table(store, "pgd")


def test_export_parses_back(runs):
    store, _, _ = runs
    rows = runs_table(store, "pgd", 0.1)
    parsed = list(csv.DictReader(io.StringIO(export_rows(rows, "csv"))))
    assert [p["run_id"] for p in parsed] == [r["run_id"] for r in rows]
    for p, r in zip(parsed, rows):
        assert set(p) == set(r)
        assert float(p["clean_acc"]) == pytest.approx(r["clean_acc"])
        assert p["constants"] == r["constants"]  # commas inside a cell survive quoting
        assert p["alone_acc"] == ("" if r["alone_acc"] is None else str(r["alone_acc"]))
        assert p["worst_case@0.1"] == ("" if r["worst_case@0.1"] is None else str(r["worst_case@0.1"]))

    def no_nan(name):
        raise AssertionError(f"{name} in JSON")

    assert json.loads(export_rows(rows, "json"), parse_constant=no_nan) == rows


def test_export_writes_non_finite_numbers_as_missing():
    rows = [{"a": float("nan"), "b": 1.5, "c": "ε"}, {"a": float("inf"), "b": None, "c": "x,y"}]
    assert json.loads(export_rows(rows, "json")) == [{"a": None, "b": 1.5, "c": "ε"},
                                                     {"a": None, "b": None, "c": "x,y"}]
    assert list(csv.reader(io.StringIO(export_rows(rows, "csv")))) == [["a", "b", "c"], ["", "1.5", "ε"],
                                                                       ["", "", "x,y"]]
    with pytest.raises(ConfigError, match="format must be one of csv, json; got 'xlsx'"):
        export_rows(rows, "xlsx")


def test_checkpoint_bytes_load_with_weights_only(runs):
    store, records, _ = runs
    state = torch.load(io.BytesIO(store.checkpoint_bytes(records["gccs"]["run_id"])), weights_only=True)
    model, _, _ = load_run(store, records["gccs"]["run_id"])
    assert set(state) == {"model", "objective"}
    assert all(torch.equal(state["model"][k], v) for k, v in model.state_dict().items())


def _record(run_id, objective, created, device="cpu", epochs=10, train_seconds=None, **settings):
    return {"run_id": run_id, "created": created, "device": device, "dataset": "digits", "model": "cnn",
            "settings": {"objective": objective, "params": {}, "epochs": epochs, "seed": 0, **settings},
            "timing": {"epochs": epochs, "train_seconds": train_seconds}}


def test_newest_comparison_is_the_newest_job_s_runs():
    from engine.report import newest_comparison

    listing = [_record("mmc1", "mmc", 9), _record("ce1", "ce", 9), _record("gccs1", "gccs", 9),
               _record("ce-other-seed", "ce", 8, seed=1), _record("ce-gpu", "ce", 7, device="cuda:0"),
               _record("old", "pcl", 1)]
    assert newest_comparison(listing) == ["mmc1", "ce1", "gccs1", "old"]
    assert newest_comparison(listing, limit=2) == ["mmc1", "ce1"] and newest_comparison([]) == []


def test_training_estimate_is_the_median_step_time_per_epoch_of_matching_runs():
    from engine.report import training_estimate

    listing = [_record("a", "ce", 1, train_seconds=1.0), _record("b", "ce", 2, train_seconds=3.0),
               _record("c", "ce", 3, train_seconds=2.0), _record("d", "gccs", 4, train_seconds=5.0),
               _record("gpu", "ce", 5, device="cuda:0", train_seconds=0.01)]
    estimate = training_estimate(listing, "digits", "cnn", "cpu", ["ce", "gccs"], epochs=100)
    assert estimate["per_epoch"] == {"ce": 0.2, "gccs": 0.5} and estimate["runs"] == 4
    assert estimate["seconds"] == pytest.approx(70.0) and estimate["missing"] == []
    assert training_estimate(listing, "digits", "cnn", "cuda", ["ce"], 100)["per_epoch"] == {"ce": 0.001}
    # an objective with no run of this dataset, model and device: no total, and it is named
    missing = training_estimate(listing, "digits", "cnn", "cpu", ["ce", "mat"], 100)
    assert missing["seconds"] is None and missing["missing"] == ["mat"]
    assert training_estimate(listing, "fashion-mnist", "cnn", "auto", ["ce"], 5)["missing"] == ["ce"]
