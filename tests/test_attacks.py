"""Attacks on small runs trained on the real digits data (torchattacks and the workbench's own)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.attacks import (ATTACKS, BUDGETS, FAMILIES, LogitsModel, RandomRotation, SimBA, attack_params, budget_of,
                            build_attack, validate_budget)
from engine.config import ObjectiveSpec, TrainConfig
from engine.data import load_dataset
from engine.robustness import robust_accuracy
from engine.sanity import sanity_warnings
from engine.objectives import ConfigError, build_objective
from engine.train import load_run, train_job
from models import build_model

ROOT = Path(__file__).resolve().parents[1]
# Few iterations and queries, so every attack runs in well under a second on 50 digits.
QUICK = {"jsma": {"steps": 30}, "spsa": {"iterations": 5, "samples": 32}, "square": {"queries": 200},
         "apgd-ce": {"steps": 10}, "apgd-dlr": {"steps": 10}, "autoattack": {"steps": 10, "queries": 200},
         "simba": {"queries": 50}, "deepfool": {"steps": 20}, "cw": {"search_steps": 2, "steps": 30, "lr": 0.01}}
LINF = [name for name, spec in ATTACKS.items() if spec.budget == "linf"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from cache import RunStore

    store = RunStore(tmp_path_factory.mktemp("attack-store"))
    config = TrainConfig(dataset="digits", model="cnn", epochs=12, device="cpu", latent_samples=50,
                         objectives=(ObjectiveSpec("ce"), ObjectiveSpec("gccs"), ObjectiveSpec("mmc", {"d": 16})))
    records = train_job(config, store)
    data = load_dataset("digits")
    loaded = {r["objective"]: load_run(store, r["run_id"]) for r in records}
    return store, records, data.x_test[:200], data.y_test[:200], loaded


@pytest.mark.parametrize("name", LINF)
def test_every_linf_attack_stays_in_the_ball_and_the_image_range(runs, name):
    _, _, x, y, loaded = runs
    model, objective, _ = loaded["gccs"]
    torch.manual_seed(0)
    adv = build_attack(name, model, objective, 0.1, **QUICK.get(name, {}))(x[:50], y[:50])
    assert adv.shape == x[:50].shape
    assert (adv - x[:50]).abs().max() <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    assert (adv != x[:50]).any()  # it did attack
    assert not model.training


@pytest.mark.parametrize("name", [n for n, spec in ATTACKS.items() if spec.budget != "none"])
def test_a_zero_budget_changes_nothing(runs, name):
    _, _, x, y, loaded = runs
    model, objective, _ = loaded["mmc"]
    torch.manual_seed(0)
    adv = build_attack(name, model, objective, 0.0, **QUICK.get(name, {}))(x[:30], y[:30])
    assert torch.allclose(adv, x[:30], atol=1e-6)


@pytest.mark.parametrize("name", ["deepfool", "cw", "simba", "gaussian-noise", "rotation"])
def test_unbounded_attacks_keep_the_image_range_and_lower_accuracy(runs, name):
    _, _, x, y, loaded = runs
    model, objective, _ = loaded["ce"]
    eps = {"simba": 1.0, "gaussian-noise": 0.5, "rotation": 90.0}.get(name, 1.0)
    torch.manual_seed(0)
    adv = build_attack(name, model, objective, eps, **QUICK.get(name, {}))(x[:50], y[:50])
    assert adv.shape == x[:50].shape and adv.min() >= 0 and adv.max() <= 1
    with torch.no_grad():
        clean = (objective.predict(model(x[:50])) == y[:50]).float().mean().item()
        attacked = (objective.predict(model(adv)) == y[:50]).float().mean().item()
    assert attacked < clean - 0.1, (clean, attacked)


def test_eps_zero_is_the_clean_accuracy_and_pgd_is_monotone(runs):
    _, records, x, y, loaded = runs
    model, objective, record = loaded["ce"]
    with torch.no_grad():
        clean = (objective.predict(model(x)) == y).float().mean().item()
    assert robust_accuracy(model, objective, x, y, "pgd", 0.0) == pytest.approx(clean)
    accuracy = []
    for eps in (0.0, 0.05, 0.1, 0.2, 0.3):
        torch.manual_seed(0)
        accuracy.append(robust_accuracy(model, objective, x, y, "pgd", eps, {"steps": 10, "alpha": 0.04}))
    assert all(b <= a + 1e-9 for a, b in zip(accuracy, accuracy[1:])), accuracy
    assert accuracy[-1] < 0.2 < accuracy[0]


def test_tgsm_reaches_its_targets(runs):
    _, _, x, y, loaded = runs
    model, objective, _ = loaded["ce"]
    adv = build_attack("tgsm", model, objective, 0.3, steps=10)(x, y)
    with torch.no_grad():
        hit = (objective.predict(model(adv)) == (y + 1) % 10).float().mean().item()
    assert hit > 0.7


def test_adaptive_pgd_is_at_least_as_strong_as_ce_pgd_on_mmc(runs):
    _, _, x, y, loaded = runs
    model, objective, _ = loaded["mmc"]
    results = {}
    for name in ("pgd", "adaptive-pgd"):
        torch.manual_seed(0)
        results[name] = robust_accuracy(model, objective, x, y, name, 0.1, {"steps": 10})
    assert results["adaptive-pgd"] <= results["pgd"] + 0.02, results


def test_attack_parameters_are_validated():
    assert attack_params("pgd", {}) == {"steps": 5, "alpha": 0.0, "restarts": 1}  # 0: the step is 2.5·ε/steps
    with pytest.raises(ConfigError, match="attack must be one of fgsm"):
        attack_params("cw2", {})
    with pytest.raises(ConfigError, match="pgd.steps"):
        attack_params("pgd", {"steps": 0})
    with pytest.raises(ConfigError, match="unknown parameter 'decay' for attack 'pgd'"):
        attack_params("pgd", {"decay": 1})


def test_sanity_warnings():
    assert sanity_warnings([0, 0.1, 0.2], [0.99, 0.5, 0.1]) == []
    rising = sanity_warnings([0, 0.1, 0.2], [0.99, 0.4, 0.6])
    assert len(rising) == 1 and "rises" in rising[0]
    stuck = sanity_warnings([0, 0.3], [0.99, 0.8])
    assert len(stuck) == 1 and "~0" in stuck[0]


def test_command_line_attack_prints_json_and_caches(runs):
    store, records, *_ = runs
    run_id = records[1]["run_id"]
    env = {**os.environ, "SIMPLEX_STORE": str(store.path), "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-m", "engine", "attack", run_id, "--attack", "pgd", "--eps", "0,0.1",
            "--samples", "100", "--param", "steps=3"]
    first = json.loads(subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout)
    assert first["objective"] == "gccs" and first["samples"] == 100 and first["params"]["steps"] == 3
    assert first["cached"] == [False, False] and first["accuracy"][0] >= first["accuracy"][1]
    again = json.loads(subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout)
    assert again["cached"] == [True, True] and again["accuracy"] == first["accuracy"]
    bad = subprocess.run(args[:7] + ["--eps", "0,2"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "eps must be numbers in [0, 1]" in bad.stderr and "for attack pgd" in bad.stderr
    assert "Traceback" not in bad.stderr


# --- the catalogue of issue 4 --------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["pgd-targeted", "jsma"])
def test_targeted_attacks_reach_the_targets_they_are_given(runs, name):
    _, _, x, y, loaded = runs
    model, objective, _ = loaded["ce"]
    eps, params = {"pgd-targeted": (0.3, {"steps": 20, "alpha": 0.03}), "jsma": (1.0, {})}[name]
    target = (y + 3) % 10
    attack = build_attack(name, model, objective, eps, **params)
    attack.set_mode_targeted_by_function(lambda images, labels: (labels + 3) % 10, quiet=True)
    torch.manual_seed(0)
    adv = attack(x[:100], y[:100])
    with torch.no_grad():
        hit = (objective.predict(model(adv)) == target[:100]).float().mean().item()
    assert hit > 0.7, hit


@pytest.mark.parametrize("name, params", [("pgd-targeted", {}), ("jsma", {}), ("cw", {"targeted": True})])
def test_random_targets_are_other_classes_and_nothing_is_printed(runs, name, params, capsys):
    _, _, x, y, loaded = runs
    model, objective, _ = loaded["ce"]
    attack = build_attack(name, model, objective, 0.1, **params)
    torch.manual_seed(0)
    target = attack.get_target_label(x, y)
    assert (target != y).all() and len(target.unique()) == 10
    # torchattacks announces mode changes on stdout unless told not to; the CLI's stdout is JSON
    assert capsys.readouterr().out == ""


def test_simba_lowers_accuracy_within_its_query_budget(runs):
    _, _, x, y, loaded = runs
    model, objective, _ = loaded["ce"]
    x, y = x[:100], y[:100]

    class CountingModel(torch.nn.Module):  # counts the images the attack shows the model
        def __init__(self, net):
            super().__init__()
            self.net, self.seen = net, 0

        def forward(self, images):
            self.seen += len(images)
            return self.net(images)

    counted = CountingModel(LogitsModel(model, objective)).eval()
    torch.manual_seed(0)
    queries = 20
    adv = SimBA(counted, eps=0.5, queries=queries)(x, y)
    with torch.no_grad():
        clean = (objective.predict(model(x)) == y).float().mean().item()
        attacked = (objective.predict(model(adv)) == y).float().mean().item()
    assert attacked < clean - 0.2, (clean, attacked)
    assert counted.seen <= len(x) * (queries + 1)  # one clean look per image, then its budget
    assert ((adv != x).flatten(1).sum(1) <= queries).all()  # one pixel per accepted query
    assert ((adv - x).abs() <= 0.5 + 1e-6).all()


def test_apgd_and_autoattack_are_at_least_as_strong_as_pgd(runs):
    _, _, x, y, loaded = runs
    model, objective, _ = loaded["gccs"]
    acc = {}
    for name in ("pgd", "apgd-ce", "apgd-dlr", "autoattack"):
        torch.manual_seed(0)
        acc[name] = robust_accuracy(model, objective, x[:100], y[:100], name, 0.1, QUICK.get(name, {}))
    assert acc["apgd-ce"] <= acc["pgd"] + 0.02 and acc["apgd-dlr"] <= acc["pgd"] + 0.02, acc
    assert acc["autoattack"] <= min(acc["apgd-ce"], acc["pgd"]) + 0.02, acc


def test_natural_perturbations_hurt_more_as_they_grow(runs):
    _, _, x, y, loaded = runs
    model, objective, _ = loaded["mmc"]
    for name, grid in (("gaussian-noise", (0.0, 0.1, 0.6)), ("rotation", (0.0, 15.0, 120.0))):
        accuracy = []
        for value in grid:
            torch.manual_seed(0)
            accuracy.append(robust_accuracy(model, objective, x, y, name, value))
        assert accuracy[0] >= accuracy[1] - 0.03 and accuracy[2] < accuracy[0] - 0.2, (name, accuracy)


def test_rotation_turns_the_image():
    image = torch.zeros(1, 1, 9, 9)
    image[0, 0, 4, 6:] = 1.0  # a bar from the centre to the right edge
    net = LogitsModel(build_model("cnn", 1, 9, 10), build_objective("ce", 10))
    turned = RandomRotation(net, degrees=90.0)
    torch.manual_seed(0)
    out = torch.stack([turned(image)[0, 0] for _ in range(20)])
    # the centre stays, the bar's end moves off the row for most angles
    assert (out[:, 4, 4] - image[0, 0, 4, 4]).abs().max() < 1e-5
    assert (out[:, 4, 8] < 0.5).float().mean() > 0.5


def test_registry_metadata_is_consistent():
    for name, spec in ATTACKS.items():
        assert spec.budget in BUDGETS and spec.family in FAMILIES, name
        assert spec.pairs_with is None or spec.pairs_with in ATTACKS, name
        assert spec.target in ("none", "next", "random") and "\n" not in spec.title, name
        assert (spec.family == "minimal") == (spec.budget == "none"), name
        budget = budget_of(name)
        assert all(budget.minimum <= v <= budget.maximum for v in budget.grid), name
    assert budget_of("fgsm").grid[0] == 0 and budget_of("fgsm").grid[-1] == pytest.approx(0.3)
    assert {n for n, s in ATTACKS.items() if s.family == "gradient-free"} == {"spsa", "square", "simba"}
    assert {n for n, s in ATTACKS.items() if s.pairs_with} == {"adaptive-pgd", "margin-pgd"}
    assert not ATTACKS["fgsm"].iterative and ATTACKS["pgd"].iterative


def test_catalogue_defaults_and_validation():
    assert attack_params("cw", {}) == {"search_steps": 9, "initial_const": 0.01, "steps": 1000, "lr": 0.005,
                                       "kappa": 0.0, "targeted": False}
    assert attack_params("spsa", {}) == {"iterations": 10, "samples": 128, "lr": 0.01, "delta": 0.01}
    assert attack_params("jsma", {}) == {"steps": 200}
    assert attack_params("simba", {}) == {"queries": 300, "score": "margin"}
    assert attack_params("deepfool", {"steps": "30"})["steps"] == 30
    with pytest.raises(ConfigError, match=r"cw.search_steps must be ≥ 1"):
        attack_params("cw", {"search_steps": 0})
    with pytest.raises(ConfigError, match=r"cw.targeted must be true or false"):
        attack_params("cw", {"targeted": "maybe"})
    with pytest.raises(ConfigError, match=r"simba.score must be one of margin, probability; got 'loss'"):
        attack_params("simba", {"score": "loss"})
    with pytest.raises(ConfigError, match=r"spsa.samples must be an integer"):
        attack_params("spsa", {"samples": 1.5})
    with pytest.raises(ConfigError, match=r"unknown parameter 'alpha' for attack 'fgsm'; allowed: none"):
        attack_params("fgsm", {"alpha": 0.1})
    two = build_objective("ce", 2)
    with pytest.raises(ConfigError, match=r"attack apgd-dlr needs at least 3 classes"):
        build_attack("apgd-dlr", build_model("cnn", 1, 8, 2), two, 0.1)
    with pytest.raises(ConfigError, match=r"eps must be numbers in \[0, 1\].* for attack pgd; got \[1.5\]"):
        build_attack("pgd", build_model("cnn", 1, 8, 10), build_objective("ce", 10), 1.5)


def test_validate_budget():
    assert validate_budget("fgsm", [0, "0.1", 0.3]) == [0.0, 0.1, 0.3]
    assert validate_budget("rotation", [0, 30, 180]) == [0.0, 30.0, 180.0]
    assert validate_budget("simba", [0.5, 1.5]) == [0.5, 1.5]
    assert validate_budget("deepfool", []) == []
    with pytest.raises(ConfigError, match=r"eps must be numbers in \[0, 1\] \(ℓ∞ radius in pixel units\) for attack "
                                          r"fgsm; got \[0.1, 2\]"):
        validate_budget("fgsm", [0.1, 2])
    with pytest.raises(ConfigError, match=r"eps must be numbers in \[0, 180\] \(degrees\) for attack rotation"):
        validate_budget("rotation", [-5])
    with pytest.raises(ConfigError, match=r"for attack gaussian-noise; got \[nan\]"):
        validate_budget("gaussian-noise", [float("nan")])
    with pytest.raises(ConfigError, match=r"for attack simba; got \['big'\]"):
        validate_budget("simba", ["big"])
    with pytest.raises(ConfigError, match=r"eps must be empty \(a minimal attack.*\) for attack cw; got \[0.1\]"):
        validate_budget("cw", [0.1])
    with pytest.raises(ConfigError, match="attack must be one of fgsm"):
        validate_budget("fgsm2", [0.1])


def test_pgd_default_step_scales_with_eps_so_pgd_is_never_capped_below_fgsm(runs):
    from engine.attacks import step_size

    assert step_size(0.0, 0.3, 5) == pytest.approx(0.15) and step_size(0.02, 0.3, 5) == 0.02
    _, _, x, y, loaded = runs
    model, objective, _ = loaded["ce"]
    torch.manual_seed(0)
    fgsm = robust_accuracy(model, objective, x, y, "fgsm", 0.2)
    torch.manual_seed(0)
    pgd = robust_accuracy(model, objective, x, y, "pgd", 0.2)  # PGD-5 with the default step
    assert pgd <= fgsm, (pgd, fgsm)
