"""The per-sample worst case on small runs trained on the real digits data: never above any member,
the same composed from the cache as computed directly, restarts that only ever help, the suite's
JSON, seed groups of the worst case and the worst-case sanity checks."""
import json
import random

import pytest
import torch

from cache import RunStore
from engine.attacks import attack_params
from engine.config import ObjectiveSpec, TrainConfig
from engine.jobs import DONE, JobManager
from engine.robustness import (accuracy_point, attack_survivors, cached_worst_case, clean_outcome,
                               load_for_evaluation, worst_case_point)
from engine.sanity import worst_case_warnings
from engine.suites import SUITES, suite_job
from engine.train import train_job

# cheap members, so that every test runs in seconds on 2 cores; the robust suite's own members are
# exercised by the command-line test on few samples
MEMBERS = [(a, attack_params(a, p)) for a, p in (("fgsm", {}), ("pgd", {"steps": 5}), ("apgd-ce", {"steps": 5}),
                                                  ("margin-pgd", {"steps": 5}), ("square", {"queries": 100}))]
EPS = (0.05, 0.1, 0.2)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    store = RunStore(tmp_path_factory.mktemp("worst-store"))
    config = TrainConfig(dataset="digits", model="cnn", epochs=10, device="cpu", latent_samples=50,
                         objectives=(ObjectiveSpec("ce"), ObjectiveSpec("mmc", {"d": 16})))
    run_ids = [r["run_id"] for r in train_job(config, store)]
    loaded, x, y = load_for_evaluation(store, run_ids, 80)
    return store, run_ids, loaded, x, y


def test_the_worst_case_never_exceeds_any_member_alone(runs):
    store, run_ids, loaded, x, y = runs
    rng = random.Random(0)
    for run_id in run_ids:
        model, objective, _ = loaded[run_id]
        for eps in EPS:
            # any subset in any order, any of them alone or cascaded: the worst case is below every member
            members = rng.sample(MEMBERS, rng.randint(2, len(MEMBERS)))
            alone = tuple(a for a, _ in members if rng.random() < 0.5)
            point = worst_case_point(store, run_id, model, objective, x, y, members, eps, standalone=alone)
            for attack, params in members:
                result, _ = accuracy_point(store, run_id, model, objective, x, y, attack, params, eps)
                assert point["accuracy"] <= result["accuracy"] + 1e-12, (run_id, eps, attack)
                if attack in alone:
                    assert point["alone"][attack] == pytest.approx(result["accuracy"])
            shares = sum(point["broken_by"].values())
            assert shares + point["accuracy"] == pytest.approx(1.0)  # every sample broken once, or robust
            # the union of everything cached for the run is tighter still, and also below every member
            cached = cached_worst_case(store, run_id, len(y))[eps]
            assert cached["accuracy"] <= point["accuracy"]
    # at ε = 0 the worst case is the clean accuracy
    model, objective, _ = loaded[run_ids[0]]
    clean = worst_case_point(store, run_ids[0], model, objective, x, y, MEMBERS, 0.0)
    assert clean["accuracy"] == pytest.approx(float(clean_outcome(None, "", model, objective, x, y).float().mean()))


def test_a_worst_case_composed_from_the_cache_equals_the_one_computed_directly(runs, tmp_path):
    _, run_ids, loaded, x, y = runs
    run_id = run_ids[1]
    model, objective, _ = loaded[run_id]
    source = runs[0]
    store = RunStore(tmp_path / "fresh")  # the same run, with nothing cached for it yet
    store.save_run(source.get_run(run_id), source.load_checkpoint(run_id), source.get_latents(run_id))
    members = MEMBERS[1:4]
    direct = worst_case_point(None, run_id, model, objective, x, y, members, 0.1, seed=3)
    stored = worst_case_point(store, run_id, model, objective, x, y, members, 0.1, seed=3)
    assert stored["robust"] == direct["robust"] and stored["broken_by"] == direct["broken_by"]
    composed = cached_worst_case(store, run_id, len(y), seed=3)
    assert composed[0.1]["accuracy"] == direct["accuracy"] and composed[0.1]["attacks"] == 3
    again = worst_case_point(store, run_id, model, objective, x, y, members, 0.1, seed=3)
    assert again["computed"] == 0 and again["robust"] == direct["robust"]
    # adding an attack computes only that attack, only on the samples still standing
    more = worst_case_point(store, run_id, model, objective, x, y, members + [MEMBERS[4]], 0.1, seed=3)
    assert more["computed"] == sum(c == "1" for c in direct["robust"])
    assert more["accuracy"] <= direct["accuracy"]
    # another seed or sample set is another entry: nothing of seed 3 is served for it
    assert list(cached_worst_case(store, run_id, len(y), seed=4)) == [0.0]  # the clean accuracy alone
    assert 0.1 not in cached_worst_case(store, run_id, len(y) - 1, seed=3)


def test_more_restarts_are_never_weaker(runs):
    _, run_ids, loaded, x, y = runs
    model, objective, _ = loaded[run_ids[0]]
    for attack in ("pgd", "margin-pgd", "square"):
        base = attack_params(attack, {"steps": 2} if attack != "square" else {"queries": 30})
        one = attack_survivors(model, objective, x, y, attack, 0.1, {**base, "restarts": 1}, seed=5)
        three = attack_survivors(model, objective, x, y, attack, 0.1, {**base, "restarts": 3}, seed=5)
        assert not (three & ~one).any(), attack  # every sample three restarts leave standing, one did too
        assert torch.equal(one, attack_survivors(model, objective, x, y, attack, 0.1, {**base, "restarts": 1}, seed=5))
    # the restarts draw their own streams: a second restart can break what the first left standing
    weak = attack_params("pgd", {"steps": 1})
    one = attack_survivors(model, objective, x, y, "pgd", 0.15, {**weak, "restarts": 1}, seed=0)
    many = attack_survivors(model, objective, x, y, "pgd", 0.15, {**weak, "restarts": 8}, seed=0)
    assert many.sum() < one.sum()


def test_worst_case_sanity_checks_fire_on_dishonest_numbers_and_stay_quiet_on_honest_ones():
    eps = [0.0, 0.1, 0.2, 0.3]
    honest = worst_case_warnings(eps, [0.99, 0.40, 0.05, 0.0],
                                 {"apgd-ce": {0.1: 0.42, 0.2: 0.07, 0.3: 0.0},
                                  "adaptive-pgd": {0.1: 0.41, 0.2: 0.06, 0.3: 0.0},
                                  "margin-pgd": {0.1: 0.43, 0.2: 0.08, 0.3: 0.0}}, "mmc")
    assert honest == []
    masked = worst_case_warnings(eps, [0.99, 0.40, 0.004, 0.0],
                                 {"pgd": {0.1: 0.55, 0.2: 0.73, 0.3: 0.60},
                                  "adaptive-pgd": {0.1: 0.536, 0.2: 0.01, 0.3: 0.0},
                                  "margin-pgd": {0.1: 0.43, 0.2: 0.01, 0.3: 0.0}}, "mmc")
    overstated = [m for m in masked if "alone overstates" in m]
    assert len(overstated) == 2  # pgd and adaptive-pgd: one line per attack, not one per ε
    assert overstated[0].startswith("pgd alone overstates MMC's robustness by up to 73 points (at ε ≥ 0.1;")
    assert any(m.startswith("adaptive-pgd is weaker than margin-pgd (0.536 vs 0.430 at ε = 0.1):")
               and "not this model's strongest attack" in m for m in masked)
    stuck = worst_case_warnings([0.0, 0.3], [0.99, 0.5], {}, "gccs")
    assert len(stuck) == 1 and "still 0.500 at ε = 0.3" in stuck[0]


def test_the_robust_suite_is_a_cascade_with_adaptive_members_and_restarts():
    robust = SUITES["robust"]
    names = [a for a, _, _ in robust.members]
    # AutoAttack and the adaptive attacks alone, on every clean-correct sample: the worst case is below each
    assert robust.cascade and names[:3] == ["autoattack", "adaptive-pgd", "margin-pgd"]
    assert {"autoattack", "adaptive-pgd", "margin-pgd", "apgd-ce"} == set(robust.alone)
    assert {"apgd-dlr", "apgd-t"} <= set(names)
    params = {a: p for a, p, _ in robust.members}
    assert params["adaptive-pgd"]["steps"] >= 50 and params["adaptive-pgd"]["restarts"] >= 2
    assert params["margin-pgd"]["steps"] >= 50 and params["margin-pgd"]["restarts"] >= 2
    assert params["autoattack"] == {"steps": 100, "queries": 5000}
    assert params["apgd-ce"]["steps"] == params["apgd-t"]["steps"] == params["apgd-dlr"]["steps"] == 100


def test_suite_job_reports_the_worst_case_per_run_and_eps(runs):
    store, run_ids, *_ = runs
    out = suite_job(store, run_ids, "adaptive", samples=80, eps="0, 0.1")
    for run_id in run_ids:
        worst = out["worst_case"][run_id]
        assert worst["eps"] == [0.0, 0.1] and len(worst["accuracy"]) == 2
        assert set(worst["broken_by"]) == {"clean", "pgd", "adaptive-pgd", "margin-pgd"}
        for entry in out["attacks"]:
            assert worst["accuracy"][1] <= entry["curves"][run_id]["accuracy"][1]
        assert sum(share[1] for share in worst["broken_by"].values()) + worst["accuracy"][1] == pytest.approx(1.0)
    assert out["suite"] == "adaptive" and out["samples"] == 80
    assert suite_job(store, run_ids[:1], "natural", samples=20, eps=None)["worst_case"] == {}


def test_suites_run_as_jobs_with_worst_case_progress(runs):
    store, run_ids, *_ = runs
    manager = JobManager(store=store)
    job = manager.wait(manager.submit_suite(run_ids, "pgd10", eps="0, 0.05", samples=40), timeout=300)
    assert job.status == DONE and job.kind == "suite" and len(job.worst_case) == 4
    assert job.detail == "4/4 worst-case points" and set(job.result["worst_case"]) == set(run_ids)


def test_command_line_evaluate_groups_seeds_and_compares_the_worst_case(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "SIMPLEX_STORE": str(tmp_path / "store"), "PYTHONPATH": str(root)}

    def engine(*args):
        done = subprocess.run([sys.executable, "-m", "engine", *args], cwd=root, env=env, capture_output=True,
                              text=True)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    trained = engine("train", "--seeds", "0,1", "--objective", "ce", "--objective", "gccs", "--epochs", "3",
                     "--threads", "1")
    run_ids = [r["run_id"] for r in trained["runs"]]
    assert len(run_ids) == 4
    # large ε on few samples: the robust suite end to end, with little left standing for its costly members
    out = engine("evaluate", *run_ids, "--eps", "0.2,0.3", "--samples", "12", "--quiet", "--threads", "1",
                 "--batch-size", "8")
    assert out["suite"] == "robust" and set(out["worst_case"]) == set(run_ids)
    for row in out["worst_case"].values():
        assert row["eps"] == [0.2, 0.3] and set(row["broken_by"]) >= {"autoattack", "adaptive-pgd", "apgd-dlr"}
    groups = {g["objective"]: g for g in out["groups"]}
    assert groups["ce"]["seeds"] == [0, 1] and groups["ce"]["worst_case"]["0.2"]["n"] == 2
    ce = [out["worst_case"][r]["accuracy"][0] for r in groups["ce"]["run_ids"]]
    assert groups["ce"]["worst_case"]["0.2"]["mean"] == pytest.approx(sum(ce) / 2)
    verdicts = [c for c in out["comparisons"] if c["metric"] == "robust@0.2"]
    assert len(verdicts) == 1 and verdicts[0]["objective"] == "gccs"
    assert verdicts[0]["verdict"] in ("higher", "lower", "within noise")
    bad = subprocess.run([sys.executable, "-m", "engine", "evaluate", run_ids[0], "--eps", "0.1,x"], cwd=root,
                         env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "eps must be comma-separated numbers" in bad.stderr
    bad = subprocess.run([sys.executable, "-m", "engine", "evaluate", run_ids[0], "--batch-size", "0"], cwd=root,
                         env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "batch" in bad.stderr and "Traceback" not in bad.stderr


def test_the_cpu_attack_batch_keeps_a_batch_of_images_in_cache():
    from engine.robustness import attack_batch

    assert attack_batch(torch.zeros(5, 1, 8, 8), None) == 1000  # digits: a thousand at once
    assert attack_batch(torch.zeros(5, 1, 28, 28), None) == 100  # Fashion-MNIST: the papers' hundred
    assert attack_batch(torch.zeros(0, 3, 32, 32), None) == 100
    assert attack_batch(torch.zeros(5, 1, 28, 28), 500) == 500  # asked for: as asked
