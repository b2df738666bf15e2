"""Adversarial training and fine-tuning, on the real digits data."""
import pytest
import torch

from engine.config import ObjectiveSpec, TrainConfig
from engine.data import load_dataset
from engine.objectives import ConfigError
from engine.train import TrainingFailed, build_member, craft_adversarial, train_job

TINY = dict(dataset="digits", model="cnn", epochs=2, batch_size=100, latent_samples=100, device="cpu")


def config(*objectives, **overrides) -> TrainConfig:
    return TrainConfig.from_dict({**TINY, "objectives": tuple(ObjectiveSpec(o) for o in objectives), **overrides})


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def member_for(cfg, data, name="gccs"):
    member, _ = build_member(cfg, ObjectiveSpec(name), data, torch.device("cpu"))
    return member


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
@pytest.mark.parametrize("targeted", [False, True])
def test_crafted_examples_stay_in_the_ball_and_the_image_range(digits, attack, targeted):
    cfg = config("gccs", adv_attack=attack, adv_eps=0.1, adv_step=0.03, adv_steps=5, adv_targeted=targeted)
    member = member_for(cfg, digits)
    x, y = digits.x_train[:64], digits.y_train[:64]
    running = member.model.state_dict()["conv1.1.running_mean"].clone()
    x_adv = craft_adversarial(member, x, y, cfg)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    assert (x_adv != x).any()
    assert member.model.training  # back in train mode
    assert torch.equal(member.model.state_dict()["conv1.1.running_mean"], running)  # BN untouched


def test_pgd_on_the_adaptive_objective_increases_it(digits):
    cfg = config("gccs", adv_attack="pgd", adv_eps=0.2, adv_step=0.05, adv_steps=10)
    member = member_for(cfg, digits)
    x, y = digits.x_train[:64], digits.y_train[:64]
    member.model.eval()
    with torch.no_grad():
        before = member.objective.adaptive_objective(member.model(x), y).mean()
    x_adv = craft_adversarial(member, x, y, cfg)
    member.model.eval()
    with torch.no_grad():
        after = member.objective.adaptive_objective(member.model(x_adv), y).mean()
    assert after > before


def test_adversarial_training_trains_reports_its_part_and_has_its_own_run_id(store):
    plain = config("gccs")
    adv = config("gccs", adv_attack="fgsm", adv_eps=0.03)
    assert plain.run_id(plain.objectives[0]) != adv.run_id(adv.objectives[0])
    # unused adversarial settings do not change the identity of a plain run
    assert plain.run_id(plain.objectives[0]) == config("gccs", adv_eps=0.2).run_id(plain.objectives[0])
    (record,) = train_job(adv.with_(epochs=8), store)
    last = record["history"][-1]
    assert {"loss", "kl", "kurtosis", "adv_loss"} <= set(last["loss"])
    assert last["test_acc"] > 0.5
    (only_adv,) = train_job(config("ce", adv_attack="pgd", adv_steps=3, adv_step=0.01,
                                   adv_clean_weight=0.0, epochs=3), store)
    assert "adv_loss" in only_adv["history"][-1]["loss"]


@pytest.mark.parametrize("field, value", [("adv_attack", "cw"), ("adv_eps", 0), ("adv_steps", 0),
                                          ("adv_clean_weight", 1.5), ("adv_loss", "margin")])
def test_bad_adversarial_settings_name_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        config("ce", **{field: value})


def test_fine_tuning_starts_from_the_stored_weights(store, digits):
    (source,) = train_job(config("ce", epochs=1), store)
    cfg = config("gccs", init_from=source["run_id"], lr=1e-3, schedule="constant")
    state = store.load_checkpoint(source["run_id"])["model"]
    member, notes = build_member(cfg, ObjectiveSpec("gccs"), digits, torch.device("cpu"), state)
    assert notes == []
    assert all(torch.equal(v, state[k]) for k, v in member.model.state_dict().items())
    (tuned,) = train_job(cfg.with_(epochs=2), store)
    assert tuned["settings"]["init_from"] == source["run_id"]
    assert tuned["run_id"] != config("gccs", lr=1e-3, schedule="constant").run_id(ObjectiveSpec("gccs"))


def test_fine_tuning_errors_name_init_from(store):
    with pytest.raises(TrainingFailed, match="init_from: no stored run 'nope'"):
        train_job(config("gccs", init_from="nope"), store)
    (source,) = train_job(config("ce", epochs=1), store)
    with pytest.raises(TrainingFailed, match="init_from: .* model 'cnn', this job uses 'mlp'"):
        train_job(config("gccs", model="mlp", init_from=source["run_id"]), store)
