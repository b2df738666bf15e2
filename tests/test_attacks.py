"""Attacks on small runs trained on the real digits data (torchattacks and the workbench's own)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.attacks import ATTACKS, attack_params, build_attack
from engine.config import ObjectiveSpec, TrainConfig
from engine.data import load_dataset
from engine.evaluate import robust_accuracy, sanity_warnings
from engine.objectives import ConfigError
from engine.train import load_run, train_job

ROOT = Path(__file__).resolve().parents[1]


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


@pytest.mark.parametrize("name", list(ATTACKS))
def test_every_attack_stays_in_the_ball_and_the_image_range(runs, name):
    _, _, x, y, loaded = runs
    model, objective, _ = loaded["gccs"]
    torch.manual_seed(0)
    adv = build_attack(name, model, objective, 0.1)(x[:50], y[:50])
    assert adv.shape == x[:50].shape
    assert (adv - x[:50]).abs().max() <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    assert not model.training


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
    assert attack_params("pgd", {}) == {"steps": 5, "alpha": 0.01}
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
    assert bad.returncode == 2 and "--eps must be" in bad.stderr and "Traceback" not in bad.stderr
