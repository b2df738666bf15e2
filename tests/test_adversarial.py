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


@pytest.mark.parametrize("loss, attack, cls, steps, random_start", [
    ("ce", "pgd", "CEPGD", 5, True), ("ce", "fgsm", "CEPGD", 1, False),
    ("adaptive", "pgd", "AdaptivePGD", 5, True), ("adaptive", "fgsm", "AdaptivePGD", 1, False)])
def test_adversarial_training_crafts_through_the_registry_classes(digits, monkeypatch, loss, attack, cls, steps,
                                                                  random_start):
    import engine.attacks.objective_pgd as objective_pgd
    from engine.train import adversarial_attack

    cfg = config("gccs", adv_attack=attack, adv_loss=loss, adv_eps=0.1, adv_step=0.03, adv_steps=5)
    member = member_for(cfg, digits)
    built = adversarial_attack(member, cfg)
    assert type(built).__name__ == cls and isinstance(built, objective_pgd.ObjectivePGD)
    assert (built.eps, built.alpha, built.steps, built.random_start) == (0.1, 0.03 if steps > 1 else 0.1, steps,
                                                                         random_start)
    calls = []
    forward = objective_pgd.ObjectivePGD.forward
    monkeypatch.setattr(objective_pgd.ObjectivePGD, "forward",
                        lambda self, images, labels: calls.append(type(self).__name__) or forward(self, images, labels))
    x, y = digits.x_train[:32], digits.y_train[:32]
    craft_adversarial(member, x, y, cfg)
    assert calls == [cls]


def test_crafting_draws_from_the_members_stream_and_matches_the_hand_written_pgd(digits):
    """Same examples as PGD written out by hand with the same random start (the pre-registry loop)."""
    cfg = config("ce", adv_attack="pgd", adv_loss="ce", adv_eps=0.1, adv_step=0.03, adv_steps=4)
    member = member_for(cfg, digits, "ce")
    x, y = digits.x_train[:32], digits.y_train[:32]
    torch.manual_seed(5)
    x_adv = craft_adversarial(member, x, y, cfg)
    torch.manual_seed(5)
    model = member.model.eval()
    ref = (x + torch.empty_like(x).uniform_(-0.1, 0.1)).clamp(0, 1)
    for _ in range(4):
        ref = ref.detach().requires_grad_(True)
        value = torch.nn.functional.cross_entropy(member.objective.logits(model(ref)), y, reduction="none")
        (grad,) = torch.autograd.grad(value.sum(), ref)
        ref = torch.min(torch.max(ref.detach() + 0.03 * grad.sign(), x - 0.1), x + 0.1).clamp(0, 1)
    model.train()
    assert torch.allclose(x_adv, ref, atol=1e-6)


def test_mat_adversarial_training_passes_the_clean_latents(digits, monkeypatch):
    from engine.objectives.mat import MAT

    cfg = config("mat", adv_attack="pgd", adv_loss="adaptive", adv_eps=0.1, adv_step=0.03, adv_steps=2)
    member, _ = build_member(cfg, ObjectiveSpec("mat", {"bibo_steps": 1}), digits, torch.device("cpu"))
    seen = []
    original = MAT.adaptive_objective
    monkeypatch.setattr(MAT, "adaptive_objective",
                        lambda self, z, y, target=None, z_clean=None: seen.append(z_clean) or
                        original(self, z, y, target, z_clean))
    craft_adversarial(member, digits.x_train[:16], digits.y_train[:16], cfg)
    assert len(seen) == 2 and all(z is not None and not z.requires_grad for z in seen)
