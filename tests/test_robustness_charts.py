"""The Robustness page's worst-case chart over seed groups: runs that differ only by seed get a mean
line with its 95 % Student-t band, from hand-made cache entries in a real store (as
engine.robustness writes them: clean decisions, per-sample attack outcomes, accuracies alone)."""
import math

import pytest
from scipy import stats

from engine.groups import mean_ci
from cache.points import result_key
from engine.robustness import accuracy_settings
from engine.suites import WORST_CASE, robustness_charts
from ui.figures import robustness_figure

SAMPLES = 10


def record(run_id, objective, seed, lr=0.01):
    settings = {"dataset": "digits", "model": "cnn", "epochs": 3, "lr": lr, "seed": seed, "objective": objective,
                "params": {}, "schema": 2}
    return {"run_id": run_id, "settings": settings, "objective": objective, "dataset": "digits", "model": "cnn",
            "final": {"test_acc": 0.9, "test_f1": 0.9, "r_ab": 1.0}}


def alive(k):
    """The first k samples are right (or survive)."""
    return "1" * k + "0" * (SAMPLES - k)


def cache_run(store, run_id, correct, survived, seed=0):
    """The clean decisions of a run and, per (attack, ε), which clean-correct samples survived, with the
    accuracy alone that a sweep stores beside each outcome (ε = 0: the clean accuracy)."""
    if not store.has_run(run_id):  # cached results belong to a stored run (they carry its checkpoint digest)
        store.save_run({"run_id": run_id, "created": 0.0}, {"model": {}}, {})
    store.put_result(result_key(run_id, "clean", {"samples": SAMPLES}),
                     {"kind": "clean", "run_id": run_id, "samples": SAMPLES, "correct": correct,
                      "accuracy": correct.count("1") / SAMPLES, "created": 0.0})
    for attack in {a for a, _ in survived}:
        settings = accuracy_settings(attack, {"steps": 3}, 0.0, SAMPLES, seed)
        store.put_result(result_key(run_id, "accuracy", settings),
                         {"kind": "accuracy", "run_id": run_id, **settings, "accuracy": correct.count("1") / SAMPLES,
                          "seconds": 0.0, "created": 0.0})
    for (attack, eps), left in survived.items():
        settings = accuracy_settings(attack, {"steps": 3}, eps, SAMPLES, seed)
        store.put_result(result_key(run_id, "outcome", settings),
                         {"kind": "outcome", "run_id": run_id, **settings, "attacked": correct, "survived": left,
                          "seconds": 0.0, "created": 0.0})
        right = sum(c == s == "1" for c, s in zip(correct, left)) / SAMPLES
        store.put_result(result_key(run_id, "accuracy", settings),
                         {"kind": "accuracy", "run_id": run_id, **settings, "accuracy": right, "seconds": 0.0,
                          "created": 0.0})


@pytest.fixture
def charted(store):
    """Three CE seeds (c2 not attacked at ε 0.2), two GCCS seeds (g0's worst case over two attacks),
    a GCCS run of another learning rate (a group of one), and c0 attacked again with attack seed 1."""
    records = {r["run_id"]: r for r in (record("c0", "ce", 0), record("c1", "ce", 1), record("c2", "ce", 2),
                                        record("g0", "gccs", 0), record("g1", "gccs", 1),
                                        record("lone", "gccs", 0, lr=0.1))}
    cache_run(store, "c0", alive(10), {("pgd", 0.1): alive(2), ("pgd", 0.2): alive(1)})
    cache_run(store, "c1", alive(9), {("pgd", 0.1): alive(3), ("pgd", 0.2): alive(1)})
    cache_run(store, "c2", alive(8), {("pgd", 0.1): alive(4)})
    cache_run(store, "c0", alive(10), {("pgd", 0.1): alive(5)}, seed=1)
    cache_run(store, "g0", alive(10), {("pgd", 0.1): alive(6), ("fgsm", 0.1): "1111101111", ("pgd", 0.2): alive(2)})
    cache_run(store, "g1", alive(10), {("pgd", 0.1): alive(7), ("pgd", 0.2): alive(4)})
    cache_run(store, "lone", alive(10), {("pgd", 0.1): alive(9)})
    results = [r for run_id in records for r in store.list_results(run_id, "accuracy")]
    return store, records, results


def test_seed_groups_get_a_mean_line_with_its_t_interval_per_eps(charted):
    store, records, results = charted
    headline = robustness_charts(results, records, store=store)[0]
    assert headline["attack"] == WORST_CASE
    ce, gccs = headline["groups"]
    t2, t1 = stats.t.ppf(0.975, 2), stats.t.ppf(0.975, 1)

    # CE: clean 1.0, 0.9, 0.8 and worst case 0.2, 0.3, 0.4 at ε 0.1; ε 0.2 left out (seed 2 has none there)
    assert ce["group"] and ce["objective"] == "ce" and ce["run_ids"] == ["c0", "c1", "c2"]
    assert ce["seeds"] == [0, 1, 2] and ce["attack_seed"] == 0 and ce["eps"] == [0.0, 0.1]
    assert ce["mean"] == pytest.approx([0.9, 0.3])
    assert ce["ci95"] == pytest.approx([t2 * 0.1 / math.sqrt(3)] * 2)
    # GCCS: g0's worst case at ε 0.1 is the union of PGD and FGSM (0.5, PGD alone 0.6), g1's 0.7
    assert gccs["run_ids"] == ["g0", "g1"] and gccs["eps"] == [0.0, 0.1, 0.2]
    assert gccs["mean"] == pytest.approx([1.0, 0.6, 0.3])
    assert gccs["ci95"] == pytest.approx([0.0, t1 * 0.1, t1 * 0.1])  # sd 0.1·√2 over √2 seeds

    # the group is the mean ± CI of the very lines it stands for
    lines = {(l["run_id"], l["seed"]): l for l in headline["lines"]}
    for group in (ce, gccs):
        for i, e in enumerate(group["eps"]):
            at = mean_ci(lines[r, 0]["accuracy"][lines[r, 0]["eps"].index(e)] for r in group["run_ids"])
            assert (group["mean"][i], group["ci95"][i]) == pytest.approx((at["mean"], at["ci95"]))
    # a run of other settings, and c0 under another attack seed, keep their own lines and form no group
    assert ("lone", 0) in lines and ("c0", 1) in lines
    assert all("lone" not in g["run_ids"] and g["attack_seed"] == 0 for g in headline["groups"])

    # drawn: a bold mean with a band per group, the seeds faint
    names = [t.name for t in robustness_figure(headline).data]
    assert "CE mean of 3 seeds · worst case" in names and "GCCS mean of 2 seeds · worst case" in names


def test_no_group_without_two_seeds_of_one_setting(charted):
    store, records, results = charted
    lone = {r: records[r] for r in ("c0", "lone")}
    headline = robustness_charts([r for r in results if r["run_id"] in lone], lone, store=store)[0]
    assert headline["attack"] == WORST_CASE and headline["groups"] == []
    assert all(t.line.width == 4 for t in robustness_figure(headline).data)


def test_filters_hide_lines_but_keep_the_worst_case_over_every_attack(charted):
    from engine.suites import filter_charts

    store, records, results = charted
    charts = robustness_charts(results, records, store=store)
    attacks = {l["attack"] for c in charts for l in c["lines"] if not l.get("worst_case")}
    assert len(attacks) >= 2, attacks
    kept = sorted(attacks)[0]
    shown = filter_charts(charts, attacks={kept})
    # the headline chart is untouched: its lines are the worst case over every attack, shown or not
    assert shown[0]["attack"] == WORST_CASE and shown[0]["lines"] == charts[0]["lines"]
    for chart in shown[1:]:
        singles = [l for l in chart["lines"] if not l.get("worst_case")]
        assert singles and {l["attack"] for l in singles} == {kept}
        # each run's worst case beside them is the one computed over every attack
        original = next(c for c in charts if c["attack"] == chart["attack"])
        assert [l for l in chart["lines"] if l.get("worst_case")] == [l for l in original["lines"] if l.get("worst_case")]
    # hiding a run drops its lines, its warnings and every seed group it belongs to
    run = "c0"
    without = filter_charts(charts, runs=set(records) - {run})
    assert all(l["run_id"] != run for c in without for l in c["lines"])
    assert all(run not in g["run_ids"] for c in without for g in c.get("groups", []))
    assert all(f"({run[:6]})" not in w for c in without for w in c["warnings"])
    assert filter_charts(charts) == charts
