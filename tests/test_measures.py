"""Minimal-perturbation measures and attack matrices on small runs trained on the real digits data."""
import threading

import pytest
import torch

from engine import measures
from engine.config import ObjectiveSpec, TrainConfig
from engine.data import load_dataset
from engine.robustness import robust_accuracy
from engine.objectives import ConfigError
from engine.train import load_run, train_job

CW_QUICK = {"steps": 100, "lr": 0.01}  # MMC's 1000 iterations at lr 0.005 are too slow for a test


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from cache import RunStore

    store = RunStore(tmp_path_factory.mktemp("measure-store"))
    config = TrainConfig(dataset="digits", model="cnn", epochs=12, device="cpu", latent_samples=50,
                         objectives=(ObjectiveSpec("ce"), ObjectiveSpec("gccs"), ObjectiveSpec("mmc", {"d": 16})))
    records = train_job(config, store)
    data = load_dataset("digits")
    loaded = {r["objective"]: load_run(store, r["run_id"])[:2] for r in records}
    return data.x_test[:100], data.y_test[:100], loaded


def clean_correct(model, objective, x, y):
    with torch.no_grad():
        return objective.test_predictions(model, x, model(x)) == y


@pytest.mark.parametrize("objective_name", ["ce", "gccs", "mmc"])
def test_deepfool_flips_most_correct_points_with_a_positive_rho(runs, objective_name):
    x, y, loaded = runs
    model, objective = loaded[objective_name]
    calls = []
    result = measures.deepfool_rho(model, objective, x, y, {"steps": 30}, batch_size=40,
                                   progress=lambda done, total: calls.append((done, total)))
    correct = clean_correct(model, objective, x, y)
    assert result["correct"] == int(correct.sum()) and result["samples"] == 100
    assert result["success_rate"] > 0.9 and result["accuracy"] < 0.1
    assert 0 < result["rho"] < 1 and result["mean_l2"] > 0
    assert result["params"] == {"steps": 30, "overshoot": 0.02, "candidates": 10}
    assert calls == [(40, 100), (80, 100), (100, 100)]


def test_deepfool_rho_is_the_mean_relative_perturbation_of_the_flipped_points(runs):
    from engine.attacks import build_attack

    x, y, loaded = runs
    model, objective = loaded["ce"]
    result = measures.deepfool_rho(model, objective, x, y, {"steps": 30})
    adv = build_attack("deepfool", model, objective, 0.0, steps=30)(x, y)
    with torch.no_grad():
        flipped = clean_correct(model, objective, x, y) & (objective.predict(model(adv)) != y)
    ratio = (adv - x).flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1)
    assert result["rho"] == pytest.approx(ratio[flipped].mean().item(), rel=1e-5)
    assert result["succeeded"] == int(flipped.sum())


def test_the_cw_binary_search_finds_smaller_perturbations_than_the_largest_c_alone(runs):
    x, y, loaded = runs
    model, objective = loaded["ce"]
    # the search from c₀ = 0.01 visits 0.01, 0.1, 1, 10, 100 while it fails, then halves back
    searched = measures.cw_l2(model, objective, x, y, {**CW_QUICK, "search_steps": 6, "initial_const": 0.01})
    largest = measures.cw_l2(model, objective, x, y, {**CW_QUICK, "search_steps": 1, "initial_const": 100.0})
    assert searched["success_rate"] >= largest["success_rate"] - 0.02 and largest["success_rate"] > 0.8
    assert searched["mean_l2"] < 0.95 * largest["mean_l2"], (searched, largest)
    assert searched["accuracy"] <= 1 - searched["clean_accuracy"] * searched["success_rate"] + 1e-9


def test_targeted_cw_reaches_random_targets(runs):
    x, y, loaded = runs
    model, objective = loaded["gccs"]
    # a target is farther than the nearest wrong class: larger Adam steps to get there in 100 iterations
    result = measures.cw_l2(model, objective, x[:50], y[:50], {"steps": 100, "lr": 0.1, "search_steps": 4,
                                                               "targeted": True})
    assert result["targeted"] and result["success_rate"] > 0.8 and result["mean_l2"] > 0


def test_spsa_grid_gets_stronger_with_iterations_and_samples(runs):
    x, y, loaded = runs
    model, objective = loaded["ce"]
    calls = []
    result = measures.spsa_grid(model, objective, x, y, eps=0.1, iterations=(2, 10), spsa_samples=(16, 128),
                                progress=lambda done, total: calls.append((done, total)))
    grid = result["accuracy"]
    assert len(grid) == 2 and all(len(row) == 2 for row in grid)
    assert grid[1][1] < grid[0][0] - 0.1, grid
    assert result["params"] == {"lr": 0.01, "delta": 0.01} and result["iterations"] == [2, 10]
    assert calls[-1] == (4, 4) and len(calls) == 4
    with pytest.raises(ConfigError, match="spsa.iterations is an axis of the grid"):
        measures.spsa_grid(model, objective, x, y, 0.1, params={"iterations": 3})
    with pytest.raises(ConfigError, match="spsa.samples must be ≥ 1"):
        measures.spsa_grid(model, objective, x, y, 0.1, iterations=(1,), spsa_samples=(0,))


def test_transfer_from_a_run_to_itself_is_the_white_box_accuracy(runs):
    """Exactly for attacks without a random start; within sampling noise for random-start PGD, whose
    white-box path attacks only the clean-correct samples and so draws other starts."""
    x, y, loaded = runs
    model, objective = loaded["gccs"]
    for attack, eps, params in (("mim", 0.15, {}), ("fgsm", 0.1, {}), ("bim", 0.1, {})):
        white_box = robust_accuracy(model, objective, x, y, attack, eps, params)
        assert measures.transfer_accuracy((model, objective), (model, objective), x, y, attack, eps, params) == white_box
    white_box = robust_accuracy(model, objective, x, y, "pgd", 0.1)
    assert abs(measures.transfer_accuracy((model, objective), (model, objective), x, y, "pgd", 0.1) - white_box) <= 0.06


def test_transfer_matrix_rows_are_substitutes_and_white_box_is_the_strongest(runs):
    x, y, loaded = runs
    result = measures.transfer_matrix(loaded, x, y, "mim", 0.15)
    names, acc = result["sources"], result["accuracy"]
    assert names == ["ce", "gccs", "mmc"] == result["targets"]
    for j, target in enumerate(names):
        model, objective = loaded[target]
        torch.manual_seed(0)
        assert acc[j][j] == robust_accuracy(model, objective, x, y, "mim", 0.15)
        # no gradient masking in these runs: crafting on the target itself beats crafting elsewhere
        assert acc[j][j] <= min(acc[i][j] for i in range(3) if i != j) + 0.05, acc
    clean = measures.transfer_matrix(list(loaded.values()), x, y, "mim", 0.0)
    for j, (model, objective) in enumerate(loaded.values()):
        expected = clean_correct(model, objective, x, y).float().mean().item()
        assert [row[j] for row in clean["accuracy"]] == pytest.approx([expected] * 3)
    with pytest.raises(ConfigError, match="transfer: no run named 'pcl'"):
        measures.transfer_matrix(loaded, x, y, "mim", 0.1, targets=["pcl"])


def test_measures_stop_when_cancelled(runs):
    x, y, loaded = runs
    model, objective = loaded["ce"]
    cancel = threading.Event()
    seen = []

    def progress(done, total):
        seen.append(done)
        cancel.set()  # cancel after the first batch

    with pytest.raises(InterruptedError, match="cancelled"):
        measures.deepfool_rho(model, objective, x, y, batch_size=25, cancel=cancel, progress=progress)
    assert seen == [25]
    for call in (lambda: measures.cw_l2(model, objective, x, y, CW_QUICK, cancel=cancel),
                 lambda: measures.spsa_grid(model, objective, x, y, 0.1, (1,), (4,), cancel=cancel),
                 lambda: measures.transfer_matrix(loaded, x, y, "fgsm", 0.1, cancel=cancel)):
        with pytest.raises(InterruptedError, match="cancelled"):
            call()
