"""Several seeds: mean ± t-interval, paired verdicts, seed groups of stored runs, `train --seeds`, the Start page."""
import json
import math

import numpy as np
import pytest
from scipy import stats

from engine.groups import (HIGHER, LOWER, NO_SEED, NOISE, ONE_SEED, comparisons, mean_ci, paired_difference,
                           parse_seeds, seed_groups, seed_summary)
from engine.objectives import ConfigError
from engine.report import NOT_EVALUATED
from cache.points import result_key
from engine.robustness import accuracy_settings


@pytest.mark.parametrize("n", [2, 3, 5, 10, 30])
def test_mean_ci_is_the_student_t_interval(n):
    values = np.random.default_rng(n).normal(0.9, 0.03, n)
    low, high = stats.t.interval(0.95, n - 1, loc=values.mean(), scale=stats.sem(values))
    got = mean_ci(list(values))
    assert got["n"] == n and got["missing"] == 0
    assert got["mean"] == pytest.approx(values.mean())
    assert got["ci95"] == pytest.approx((high - low) / 2)
    assert got["ci95"] == pytest.approx(stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n))


def test_mean_ci_of_one_none_or_nothing():
    assert mean_ci([0.5]) == {"mean": 0.5, "ci95": None, "n": 1, "missing": 0}
    assert mean_ci([]) == {"mean": None, "ci95": None, "n": 0, "missing": 0}
    # a missing value is never averaged away: the result says how many values were finite
    assert mean_ci([0.5, None, 0.7]) == {"mean": None, "ci95": None, "n": 2, "missing": 1}
    assert mean_ci([0.5, float("nan")]) == {"mean": None, "ci95": None, "n": 1, "missing": 1}
    assert mean_ci([2.0, 2.0, 2.0])["ci95"] == 0.0


def test_paired_verdicts_on_known_differences():
    rng = np.random.default_rng(0)
    base = {s: 0.9 + 0.05 * rng.standard_normal() for s in range(5)}  # seed-to-seed spread ≫ the difference
    higher = {s: v + 0.02 + 0.002 * rng.standard_normal() for s, v in base.items()}
    lower = {s: v - 0.02 + 0.002 * rng.standard_normal() for s, v in base.items()}
    noise = {s: v + 0.02 * rng.standard_normal() for s, v in base.items()}
    up = paired_difference(higher, base)
    assert up["verdict"] == HIGHER and up["seeds"] == [0, 1, 2, 3, 4]
    assert up["mean_difference"] == pytest.approx(0.02, abs=0.003)
    assert up["mean_difference"] - up["ci95"] > 0
    assert paired_difference(lower, base)["verdict"] == LOWER
    assert paired_difference(base, lower)["verdict"] == HIGHER  # antisymmetric
    within = paired_difference(noise, base)
    assert within["verdict"] == NOISE == "within noise"
    assert within["mean_difference"] - within["ci95"] <= 0 <= within["mean_difference"] + within["ci95"]
    # pairing matters: the same difference unpaired (group means ± CI) would overlap completely
    assert mean_ci(higher.values())["ci95"] > 0.02


def test_paired_difference_uses_only_shared_finite_seeds():
    one = paired_difference({0: 0.9, 1: 0.8}, {0: 0.85, 2: 0.8})
    assert one == {"seeds": [0], "mean_difference": pytest.approx(0.05), "ci95": None, "verdict": ONE_SEED}
    assert paired_difference({0: 0.9}, {1: 0.9})["verdict"] == NO_SEED
    dropped = paired_difference({0: 0.9, 1: None, 2: 0.92, 3: 0.91}, {0: 0.8, 1: 0.8, 2: 0.81, 3: float("nan")})
    assert dropped["seeds"] == [0, 2]
    assert paired_difference({0: 1.0, 1: 1.0}, {0: 1.0, 1: 1.0})["verdict"] == NOISE  # [0, 0] contains 0


def test_parse_seeds():
    assert parse_seeds("0,1,2") == [0, 1, 2] and parse_seeds(" 3 , 1") == [3, 1]
    for text in ("0,x", "-1", "0,0", "", "1.5"):
        with pytest.raises(ConfigError, match=r"--seeds must be comma-separated distinct integers from 0"):
            parse_seeds(text)


def record(run_id, objective, seed, acc, f1=None, r_ab=1.0, epochs=3, params=None, dataset="digits"):
    settings = {"dataset": dataset, "model": "cnn", "epochs": epochs, "lr": 0.01, "seed": seed,
                "objective": objective, "params": params or {}, "schema": 2}
    return {"run_id": run_id, "settings": settings, "objective": objective, "dataset": dataset, "model": "cnn",
            "final": {"test_acc": acc, "test_f1": acc if f1 is None else f1, "r_ab": r_ab}}


RECORDS = [
    record("g2", "gccs", 2, 0.95, r_ab=3.0), record("c0", "ce", 0, 0.90), record("g0", "gccs", 0, 0.93, r_ab=3.1),
    record("c1", "ce", 1, 0.91), record("g1", "gccs", 1, 0.94, r_ab=2.9), record("c2", "ce", 2, 0.92),
    record("g0-lam", "gccs", 0, 0.50, params={"lam": 0.5}),  # other constants: its own group
    record("c0-long", "ce", 0, 0.99, epochs=10),  # other recipe: its own group, its own setting
]


def test_seed_groups_of_hand_made_records():
    groups = seed_groups(RECORDS)
    assert seed_groups(list(reversed(RECORDS))) == groups  # a stable order
    assert seed_groups(RECORDS + RECORDS[:2]) == groups  # a record given twice counts once
    by_runs = {tuple(g["run_ids"]): g for g in groups}
    assert set(by_runs) == {("c0", "c1", "c2"), ("g0", "g1", "g2"), ("g0-lam",), ("c0-long",)}
    ce, gccs = by_runs[("c0", "c1", "c2")], by_runs[("g0", "g1", "g2")]
    assert ce["seeds"] == [0, 1, 2] and ce["objective"] == "ce" and ce["dataset"] == "digits"
    assert ce["clean_accuracy"]["mean"] == pytest.approx(0.91) and ce["clean_accuracy"]["n"] == 3
    assert ce["clean_accuracy"]["ci95"] == pytest.approx(stats.t.ppf(0.975, 2) * 0.01 / math.sqrt(3))
    assert gccs["r_ab"]["mean"] == pytest.approx(3.0) and gccs["macro_f1"]["mean"] == pytest.approx(0.94)
    assert by_runs[("g0-lam",)]["clean_accuracy"]["ci95"] is None
    # CE before GCCS within one setting
    order = [g["run_ids"][0] for g in groups]
    assert order.index("c0") < order.index("g0")


def test_comparisons_pair_each_objective_with_ce_of_the_same_setting():
    rows = comparisons(seed_groups(RECORDS))
    pairs = {(tuple(r["run_ids"]), r["metric"]): r for r in rows}
    acc = pairs[(("g0", "g1", "g2"), "clean_accuracy")]
    assert acc["baseline_run_ids"] == ["c0", "c1", "c2"] and acc["objective"] == "gccs" and acc["baseline"] == "ce"
    assert acc["mean_difference"] == pytest.approx(0.03) and acc["verdict"] == HIGHER and acc["ci95"] == pytest.approx(0)
    lam = pairs[(("g0-lam",), "clean_accuracy")]
    assert lam["verdict"] == ONE_SEED and lam["baseline_run_ids"] == ["c0"]
    # the 10-epoch CE run has no other objective beside it; every row is objective vs CE of equal recipe
    assert all("c0-long" not in r["baseline_run_ids"] for r in rows)
    assert {r["metric"] for r in rows} == {"clean_accuracy", "macro_f1", "r_ab"} and len(rows) == 6


def test_comparisons_ask_the_hook_for_other_metrics():
    robust = {"c0": 0.1, "c1": 0.2, "c2": 0.15, "g0": 0.5, "g1": 0.3, "g2": None}
    rows = comparisons(seed_groups(RECORDS[:6]), metric_of=lambda run_id, metric: robust[run_id],
                       metrics=["robust_accuracy@0.1"])
    (row,) = rows
    assert row["seeds"] == [0, 1] and row["run_ids"] == ["g0", "g1"] and row["baseline_run_ids"] == ["c0", "c1"]
    assert row["mean_difference"] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="metric_of"):
        comparisons(seed_groups(RECORDS[:6]), metrics=["robust_accuracy@0.1"])
    groups = seed_groups(RECORDS[:6], metric_of=lambda r, m: robust[r], extra_metrics=["robust_accuracy@0.1"])
    gccs = next(g for g in groups if g["objective"] == "gccs")
    assert gccs["robust_accuracy@0.1"] == {"mean": None, "ci95": None, "n": 2, "missing": 1}


def test_seed_summary_tables():
    summary = seed_summary(RECORDS[:6])
    assert [r["objective"] for r in summary["groups"]] == ["CE", "GCCS"]
    assert summary["groups"][0]["clean accuracy (mean ± 95% CI)"].startswith("0.9100 ± 0.02")
    verdicts = {r["metric"]: r["verdict"] for r in summary["comparisons"]}
    assert verdicts == {"clean accuracy": HIGHER, "macro F1": HIGHER, "r_AB": HIGHER}
    assert seed_summary([r for r in RECORDS if r["objective"] == "ce"])["comparisons"] == []


def cache_outcomes(store, run_id, correct, survived, samples=None, seed=0):
    """Hand-made cache entries as engine.robustness writes them: the clean decisions ("1" = right) and,
    per (attack, ε), which of the clean-correct samples the attack left right (attacked = clean-correct)."""
    samples = samples or len(correct)
    if not store.has_run(run_id):  # cached results belong to a stored run (they carry its checkpoint digest)
        store.save_run({"run_id": run_id, "created": 0.0}, {"model": {}}, {})
    store.put_result(result_key(run_id, "clean", {"samples": samples}),
                     {"kind": "clean", "run_id": run_id, "samples": samples, "correct": correct,
                      "accuracy": correct.count("1") / samples, "created": 0.0})
    for (attack, eps), alive in survived.items():
        settings = accuracy_settings(attack, {"steps": 3}, eps, samples, seed)
        store.put_result(result_key(run_id, "outcome", settings),
                         {"kind": "outcome", "run_id": run_id, **settings, "attacked": correct, "survived": alive,
                          "seconds": 0.0, "created": 0.0})


def alive(k, n=10):
    """The first k of n samples survive."""
    return "1" * k + "0" * (n - k)


def test_seed_summary_adds_the_worst_case_per_eps_with_its_ci_and_paired_verdicts(store):
    every = "1" * 10
    # CE 0.2, 0.3, 0.4 at ε 0.1; c2 has nothing at ε 0.2, so CE's group has no mean there
    for run, k in (("c0", 2), ("c1", 3), ("c2", 4)):
        cache_outcomes(store, run, every, {("pgd", 0.1): alive(k), **({("pgd", 0.2): alive(1)} if run != "c2" else {})})
    # GCCS 0.5, 0.7, 0.6 at ε 0.1; g0's is the per-sample union of two attacks (pgd alone: 0.6)
    cache_outcomes(store, "g0", every, {("pgd", 0.1): alive(6), ("fgsm", 0.1): "1111101111", ("pgd", 0.2): alive(2)})
    cache_outcomes(store, "g1", every, {("pgd", 0.1): alive(7), ("pgd", 0.2): alive(3)})
    cache_outcomes(store, "g2", every, {("pgd", 0.1): alive(6), ("pgd", 0.2): alive(4)})
    # MMC: its two seeds on different test samples give no mean
    mmc = [record("m0", "mmc", 0, 0.9), record("m1", "mmc", 1, 0.9)]
    cache_outcomes(store, "m0", every, {("pgd", 0.1): alive(5)})
    cache_outcomes(store, "m1", every * 2, {("pgd", 0.1): alive(5, 20)})
    # g0-lam (its own group) has no cached worst case at all

    summary = seed_summary(RECORDS[:7] + mmc, store=store)
    rows = {(r["objective"], r["seeds"]): r for r in summary["groups"]}
    ce, gccs = rows[("CE", "0, 1, 2")], rows[("GCCS", "0, 1, 2")]
    assert list(ce)[:7] == ["objective", "seeds", "n", "clean accuracy (mean ± 95% CI)",
                            "worst case @ ε 0.1 (mean ± 95% CI)", "worst case @ ε 0.2 (mean ± 95% CI)",
                            "worst case evaluated on"]
    half = stats.t.ppf(0.975, 2) * 0.1 / math.sqrt(3)  # sd 0.1 of three seeds
    assert ce["worst case @ ε 0.1 (mean ± 95% CI)"] == f"{0.3:.4f} ± {half:.4f}"
    assert ce["worst case @ ε 0.2 (mean ± 95% CI)"] == "not evaluated"  # seed 2 has none there
    assert ce["worst case evaluated on"] == ("worst case over 1 attack setting per seed; first 10 test images; "
                                             "attack seed 0")
    assert gccs["worst case @ ε 0.1 (mean ± 95% CI)"] == f"{0.6:.4f} ± {half:.4f}"  # 0.5 (the union), 0.7, 0.6
    assert gccs["worst case @ ε 0.2 (mean ± 95% CI)"] == f"{0.3:.4f} ± {half:.4f}"
    assert gccs["worst case evaluated on"].startswith("worst case over 1–2 attack settings per seed")
    lam = rows[("GCCS", "0")]
    assert lam["worst case @ ε 0.1 (mean ± 95% CI)"] == "not evaluated" and lam["worst case evaluated on"] == NOT_EVALUATED
    mixed = rows[("MMC", "0, 1")]
    assert mixed["worst case @ ε 0.1 (mean ± 95% CI)"] == "n/a: different test samples"
    assert mixed["worst case evaluated on"].startswith("different test samples per seed (10, 20 images)")

    # paired per seed, GCCS − CE at ε 0.1: 0.3, 0.4, 0.2; no row at ε 0.2 (CE's group has no mean there)
    worst = [r for r in summary["comparisons"] if r["metric"].startswith("worst case")]
    (row,) = [r for r in worst if r["comparison"] == "GCCS − CE"]
    diffs = np.array([0.3, 0.4, 0.2])
    half = stats.t.ppf(0.975, 2) * diffs.std(ddof=1) / math.sqrt(3)
    assert row["metric"] == "worst case @ ε 0.1" and row["seeds"] == "0, 1, 2"
    assert row["difference (mean ± 95% CI)"] == f"{diffs.mean():.4f} ± {half:.4f}"
    assert diffs.mean() - half > 0 and row["verdict"] == HIGHER
    assert len(worst) == 1  # g0-lam not evaluated, MMC on different samples: no worst-case verdict
    # without the store, the tables are as before
    assert not any("worst case" in k for r in seed_summary(RECORDS[:6])["groups"] for k in r)


def test_seed_summary_worst_case_of_a_seed_not_evaluated(store):
    cache_outcomes(store, "c0", "1" * 10, {("pgd", 0.1): alive(2)})
    summary = seed_summary(RECORDS[:6], store=store)
    ce, gccs = summary["groups"]
    assert not any(k.startswith("worst case @") for k in ce)  # no group has a mean at any ε: no ε column
    assert ce["worst case evaluated on"].startswith("not evaluated for seeds 1, 2: run the robust suite")
    assert gccs["worst case evaluated on"] == NOT_EVALUATED
    assert not any(r["metric"].startswith("worst case") for r in summary["comparisons"])


@pytest.mark.slow
def test_cli_trains_every_seed_and_reports_groups_and_verdicts(tmp_path):
    from tests.test_cli import cli

    args = ["train", "--objective", "ce", "--objective", "gccs", "--epochs", "1", "--seeds", "0,1,2",
            "--threads", "2", "--latent-samples", "100"]
    out = json.loads(cli(*args, store=tmp_path).stdout)
    assert [(r["objective"], r["seed"]) for r in out["runs"]] == [(o, s) for s in (0, 1, 2) for o in ("ce", "gccs")]
    assert [(g["objective"], g["seeds"]) for g in out["groups"]] == [("ce", [0, 1, 2]), ("gccs", [0, 1, 2])]
    for group in out["groups"]:
        accs = [r["clean_accuracy"] for r in out["runs"] if r["objective"] == group["objective"]]
        assert group["clean_accuracy"] == pytest.approx(mean_ci(accs))
    assert [(c["objective"], c["metric"]) for c in out["comparisons"]] == [
        ("gccs", "clean_accuracy"), ("gccs", "macro_f1"), ("gccs", "r_ab")]
    assert all(c["seeds"] == [0, 1, 2] and c["verdict"] in (HIGHER, LOWER, NOISE) for c in out["comparisons"])

    again = json.loads(cli(*args, "--quiet", store=tmp_path).stdout)
    assert all(r["reused"] for r in again["runs"]) and again["comparisons"] == out["comparisons"]


@pytest.mark.parametrize("args, words", [
    (["--seeds", "0,x"], ["error: --seeds", "comma-separated distinct integers from 0", "'0,x'"]),
    (["--seeds", "-1"], ["error: --seeds", "out of range"]),
    (["--seeds", "1,1"], ["error: --seeds", "appears twice"]),
    (["--seed", "1", "--seeds", "0,1"], ["--seeds: not allowed with argument --seed"]),
])
def test_cli_bad_seeds(tmp_path, capsys, args, words):
    from engine.__main__ import main

    try:  # in-process (a subprocess costs seconds of imports); argparse's own errors exit
        code = main(["--store", str(tmp_path), "train", "--epochs", "1", *args])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and "Traceback" not in err
    for word in words:
        assert word in err


def test_start_page_offers_three_seeds_and_refuses_bad_ones():
    from tests.test_app import button, new_app

    at = new_app()
    assert at.text_input(key="start-seeds-quick").value == "0,1,2"
    at.text_input(key="start-seeds-quick").set_value("0,x")
    button(at, "Train CE vs GCCS").click()
    at.run()
    assert not at.exception and "seeds must be comma-separated" in at.error[0].value


def test_start_page_summarises_the_seeds_once_all_are_stored():
    from tests.test_app import button, new_app, run_until

    at = new_app()
    at.number_input[0].set_value(1)
    at.text_input(key="start-seeds-quick").set_value("3,4")
    button(at, "Train CE vs GCCS").click()
    def table(a, column):
        return next((d.value for d in a.dataframe if column in d.value.columns), None)

    at = run_until(at, lambda a: table(a, "verdict") is not None, timeout=180)
    assert table(at, "epoch")["epoch"].tolist() == [1, 1]  # the first seed's live view stays
    assert list(table(at, "status")["status"]) == ["done", "done"]
    summary = table(at, "clean accuracy (mean ± 95% CI)")
    assert list(summary["objective"]) == ["CE", "GCCS"] and list(summary["seeds"]) == ["3, 4", "3, 4"]
    assert all(" ± " in v for v in summary["clean accuracy (mean ± 95% CI)"])
    assert list(summary["worst case evaluated on"]) == [NOT_EVALUATED] * 2  # nothing attacked yet
    verdicts = table(at, "verdict")
    assert list(verdicts["comparison"]) == ["GCCS − CE"] * 3
    assert set(verdicts["verdict"]) <= {HIGHER, LOWER, NOISE}
