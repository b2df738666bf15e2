"""Centre loss (Wen et al. 2016) against independent computations: numpy by hand, Wen's centre
update on a hand-made batch, the checkpoint, and a short training run on the real digits data."""
import numpy as np
import pytest
import torch

import engine.objectives
from engine.objectives import ConfigError
from engine.objectives.center import CenterLoss

K, D = 4, 3


def make(seed=0, **params):
    """A double-precision objective with random (non-zero) centres."""
    torch.manual_seed(seed)
    obj = CenterLoss(K, d=D, **params).double()
    with torch.no_grad():
        obj.centres.copy_(torch.randn(K, D, dtype=torch.float64))
    return obj


def batch(b=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, D, generator=g, dtype=torch.float64), torch.randint(0, K, (b,), generator=g)


def numpy_loss(obj, z, y, lam):
    w = obj.classifier.weight.detach().numpy()
    bias = obj.classifier.bias.detach().numpy()
    c = obj.centres.numpy()
    ce, center = [], []
    for zi, yi in zip(z.numpy(), y.numpy()):
        logits = w @ zi + bias
        ce.append(np.log(np.sum(np.exp(logits))) - logits[yi])
        center.append(0.5 * np.sum((zi - c[yi]) ** 2))
    return np.mean(ce) + lam * np.mean(center), np.mean(ce), np.mean(center)


@pytest.mark.parametrize("lam", [0.003, 0.5, 0.0])
def test_loss_is_ce_plus_lambda_half_squared_distance(lam):
    obj = make(lam=lam)
    z, y = batch(seed=1)
    out = obj.loss(z, y)
    total, ce, center = numpy_loss(obj, z, y, lam)
    assert out.loss.item() == pytest.approx(total, rel=1e-12)
    assert out.parts["loss"].item() == pytest.approx(total, rel=1e-12)
    assert out.parts["ce"].item() == pytest.approx(ce, rel=1e-12)
    assert out.parts["center"].item() == pytest.approx(center, rel=1e-12)
    assert not any(v.requires_grad for v in out.parts.values())


def test_gradient_is_finite_and_by_hand():
    """∂L/∂z_i = (Wᵀ(p_i − e_{y_i}) + λ(z_i − c_{y_i})) / B; the centres get no gradient."""
    lam = 0.3
    obj = make(lam=lam)
    z, y = batch(seed=2)
    z.requires_grad_(True)
    obj.loss(z, y).loss.backward()
    w = obj.classifier.weight.detach().numpy()
    logits = z.detach().numpy() @ w.T + obj.classifier.bias.detach().numpy()
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    onehot = np.eye(K)[y.numpy()]
    expected = ((p - onehot) @ w + lam * (z.detach().numpy() - obj.centres.numpy()[y.numpy()])) / len(y)
    assert np.allclose(z.grad.numpy(), expected, rtol=1e-10, atol=1e-14)
    assert torch.isfinite(obj.classifier.weight.grad).all() and obj.classifier.weight.grad.abs().sum() > 0
    assert not obj.centres.requires_grad and obj.centres.grad is None


def test_after_step_moves_centres_by_wens_rule():
    obj = CenterLoss(K, d=2, alpha=0.5).double()
    with torch.no_grad():
        obj.centres.copy_(torch.tensor([[0.0, 0.0], [5.0, 5.0], [1.0, -1.0], [-3.0, 2.0]], dtype=torch.float64))
    z = torch.tensor([[2.0, 0.0], [4.0, 0.0], [1.0, 1.0], [3.0, -3.0]], dtype=torch.float64)
    y = torch.tensor([0, 0, 2, 2])
    obj.after_step(z, y)
    # class 0: Δ = ((0−2) + (0−4), 0) / (1 + 2) = (−2, 0); c ← c − 0.5·Δ = (1, 0)
    # class 2: Δ = ((1−1) + (1−3), (−1−1) + (−1+3)) / 3 = (−2/3, 0); c ← (1 + 1/3, −1)
    # classes 1 and 3 are not in the batch: unchanged
    expected = torch.tensor([[1.0, 0.0], [5.0, 5.0], [4.0 / 3.0, -1.0], [-3.0, 2.0]], dtype=torch.float64)
    assert torch.allclose(obj.centres, expected, rtol=0, atol=1e-14)


@pytest.mark.parametrize("alpha", [0.5, 0.1, 1.0, 0.0])
def test_after_step_equals_a_loop_over_classes(alpha):
    obj = make(alpha=alpha)
    z, y = batch(b=9, seed=3)
    y[y == 3] = 1  # class 3 absent
    before = obj.centres.clone()
    obj.after_step(z, y)
    for j in range(K):
        members = [i for i in range(len(y)) if y[i] == j]
        delta = sum((before[j] - z[i] for i in members), torch.zeros(D, dtype=torch.float64)) / (1 + len(members))
        assert torch.allclose(obj.centres[j], before[j] - alpha * delta, rtol=0, atol=1e-14), j
    assert torch.equal(obj.centres[3], before[3])


def test_repeated_updates_converge_to_the_class_means():
    obj = make(alpha=0.5)
    z, y = batch(b=40, seed=4)
    for _ in range(200):
        obj.after_step(z, y)
    for j in range(K):
        assert torch.allclose(obj.centres[j], z[y == j].mean(0), atol=1e-10)


def test_centres_are_a_buffer_in_the_state_dict_and_w_is_what_the_optimiser_trains():
    obj = CenterLoss(10, d=16)
    assert obj.latent_dim == 16
    assert torch.equal(obj.centres, torch.zeros(10, 16))  # they start at the origin
    assert obj.geometry() is obj.centres
    state = obj.state_dict()
    assert set(state) == {"centres", "classifier.weight", "classifier.bias"}
    shared = {id(p) for p in obj.shared_parameters()}
    assert shared == {id(obj.classifier.weight), id(obj.classifier.bias)}
    assert id(obj.centres) not in shared
    other = CenterLoss(10, d=16)
    with torch.no_grad():
        obj.centres.normal_()
    other.load_state_dict(obj.state_dict())
    assert torch.equal(other.centres, obj.centres)
    assert torch.equal(other.classifier.weight, obj.classifier.weight)


def test_optimiser_trains_w_and_only_after_step_moves_the_centres():
    torch.manual_seed(0)
    obj = CenterLoss(K, d=D, lam=0.1)
    g = torch.Generator().manual_seed(5)
    y = torch.arange(K).repeat(8)
    z = 3.0 * torch.eye(K, D)[y] + 0.3 * torch.randn(len(y), D, generator=g)
    opt = torch.optim.SGD(list(obj.shared_parameters()), lr=0.5)
    w0, first = obj.classifier.weight.detach().clone(), obj.loss(z, y).loss.item()
    for _ in range(50):
        before = obj.centres.clone()
        opt.zero_grad()
        obj.loss(z, y).loss.backward()
        opt.step()
        assert torch.equal(obj.centres, before)
        obj.after_step(z, y)
    assert not torch.equal(obj.classifier.weight, w0)
    assert obj.loss(z, y).loss.item() < 0.5 * first
    assert (obj.predict(z) == y).float().mean().item() == 1.0


def test_logits_prediction_geometry_and_diagnostics():
    obj = make()
    z, y = batch(seed=6)
    logits = obj.logits(z)
    expected = z.numpy() @ obj.classifier.weight.detach().numpy().T + obj.classifier.bias.detach().numpy()
    assert np.allclose(logits.detach().numpy(), expected, rtol=1e-12)
    assert torch.equal(obj.predict(z), logits.argmax(1))
    assert obj.geometry().shape == (K, D)
    d = obj.diagnostics(z, y)
    assert d["mean_norm_z"] == pytest.approx(np.linalg.norm(z.numpy(), axis=1).mean(), rel=1e-12)
    own = np.linalg.norm(z.numpy() - obj.centres.numpy()[y.numpy()], axis=1).mean()
    assert d["mean_dist_own_centre"] == pytest.approx(own, rel=1e-12)
    # the adaptive objective is CE on the logits
    ce = torch.nn.functional.cross_entropy(logits, y, reduction="none")
    assert torch.allclose(obj.adaptive_objective(z, y), ce)


def test_half_precision_inputs():
    obj = CenterLoss(K, d=D)
    z, y = batch(seed=7)
    zz = z.to(torch.bfloat16).requires_grad_(True)
    loss = obj.loss(zz, y).loss
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(zz.grad).all()
    obj.after_step(zz.detach(), y)
    assert obj.centres.dtype == torch.float32 and torch.isfinite(obj.centres).all()


def test_defaults():
    obj = CenterLoss(10)
    assert obj.params == {"lam": 0.003, "alpha": 0.5, "d": 64}
    assert obj.latent_dim == 64 and obj.classifier.weight.shape == (10, 64)
    assert CenterLoss.param_warnings(10, {}) == []
    assert any("center.lam" in w for w in CenterLoss.param_warnings(10, {"lam": 2}))


@pytest.mark.parametrize("params, field", [({"lam": -1}, "center.lam"), ({"alpha": 1.5}, "center.alpha"),
                                           ({"alpha": -0.1}, "center.alpha"), ({"d": 1}, "center.d"),
                                           ({"d": 2.5}, "center.d"), ({"lam": "x"}, "center.lam")])
def test_bad_constants_name_the_field(params, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        CenterLoss(10, **params)


def test_train_config_validation_names_the_field(monkeypatch):
    monkeypatch.setitem(engine.objectives.OBJECTIVES, "center", CenterLoss)
    from engine.config import TrainConfig
    with pytest.raises(ConfigError, match=r"center\.alpha"):
        TrainConfig.from_dict({"objectives": [{"name": "center", "params": {"alpha": 2}}]})
    with pytest.raises(ConfigError, match="'beta'.*center"):
        TrainConfig.from_dict({"objectives": [{"name": "center", "params": {"beta": 2}}]})


def test_trains_on_digits_and_the_checkpoint_keeps_centres_and_classifier(monkeypatch, store):
    """A short run on the real data (default recipe: SGD, lr 0.01, cosine) beats chance (10 %) by a
    wide margin. Digits has 7 batches an epoch: after 15 epochs the centre loss had only 0.81–0.90
    test accuracy over seeds 0–3 (CE 0.91–0.97; the extra linear layer W starts slower), after 30
    0.96–0.98 (CE 0.96–0.97), after the quick preset's 100 0.98."""
    monkeypatch.setitem(engine.objectives.OBJECTIVES, "center", CenterLoss)
    from engine.config import ObjectiveSpec, TrainConfig
    from engine.data import load_dataset
    from engine.train import latents_of, load_run, train_job
    (rec,) = train_job(TrainConfig(dataset="digits", model="cnn", objectives=(ObjectiveSpec("center"),),
                                   epochs=30, device="cpu"), store)
    assert len(rec["history"]) == 30
    assert rec["final"]["test_acc"] > 0.8
    assert rec["latent_dim"] == 64
    model, objective, _ = load_run(store, rec["run_id"])
    assert isinstance(objective, CenterLoss)
    assert objective.centres.abs().sum() > 0  # the centres moved from the origin and were saved
    data = load_dataset("digits")
    z = latents_of(model, data.x_test)
    acc = (objective.predict(z) == data.y_test).float().mean().item()
    assert acc == pytest.approx(rec["final"]["test_acc"], abs=1e-6)  # W and b came back too
    # the centres sit near the class means of the (test) latents: closer than to other classes' means
    means = torch.stack([z[data.y_test == j].mean(0) for j in range(10)])
    dist = torch.cdist(objective.centres, means)
    assert torch.equal(dist.argmin(1), torch.arange(10))
