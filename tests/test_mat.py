"""MAT against independent computations: numpy cosines by hand, autograd gradients, a BatchNorm
model for the inner PGD, and a short real training run."""
import math
import time

import numpy as np
import pytest
import torch
from torch import nn

import engine.objectives
from engine.objectives import ConfigError
from engine.objectives.centres import max_mahalanobis_centres
from engine.objectives.mat import BIBO_START_STD, MAT, NORM_FLOOR, VARIANTS

K = 5
D = 8


def batch(n=12, d=D, k=K, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d, generator=g, dtype=dtype) * 3
    y = torch.arange(n) % k
    return z, y


class TinyNet(nn.Module):
    """A small conv net with BatchNorm and dropout, ending in a linear latent layer."""

    def __init__(self, d=D, dropout=0.0):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Sequential(nn.Linear(4 * 6 * 6, 16), nn.BatchNorm1d(16), nn.ReLU())
        self.mapper = nn.Linear(16, d)

    def forward(self, x):
        return self.mapper(self.fc(self.drop(torch.flatten(self.conv(x), 1))))


def images(n=10, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 6, 6, generator=g, dtype=dtype)
    x[:, :, 0] = 0.0  # pixels on both edges of [0, 1]: the clip must hold them there
    x[:, :, -1] = 1.0
    return x


def hand_cosines(z: np.ndarray, centres: np.ndarray) -> np.ndarray:
    out = np.empty((len(z), len(centres)))
    for b in range(len(z)):
        for k in range(len(centres)):
            out[b, k] = z[b] @ centres[k] / (math.sqrt(z[b] @ z[b]) * math.sqrt(centres[k] @ centres[k]))
    return out


# --- the terms ------------------------------------------------------------------------------------
@pytest.mark.parametrize("c", [1.0, 7.5])
def test_ftc_and_so_by_hand(c):
    z, y = batch()
    obj = MAT(K, d=D, c=c, variant="ftc+so", alpha=0.7).double()
    centres = max_mahalanobis_centres(K, D, c).double().numpy()
    cos = hand_cosines(z.numpy(), centres)
    ftc = np.array([1 - cos[b, y[b]] for b in range(len(y))])
    so = np.array([(1 - cos[b, y[b]] ** 2) / (z[b].numpy() @ z[b].numpy()) for b in range(len(y))])
    assert obj.ftc(z, y).numpy() == pytest.approx(ftc, rel=1e-10, abs=1e-12)
    assert obj.so(z, y).numpy() == pytest.approx(so, rel=1e-10, abs=1e-12)
    out = obj.loss(z, y)
    assert set(out.parts) == {"loss", "ftc", "so"}
    assert out.parts["ftc"].item() == pytest.approx(ftc.mean(), rel=1e-10)
    assert out.parts["so"].item() == pytest.approx(so.mean(), rel=1e-10)
    assert out.loss.item() == pytest.approx(ftc.mean() + 0.7 * so.mean(), rel=1e-10)
    assert out.parts["loss"].item() == pytest.approx(out.loss.item(), rel=1e-12)


def test_ftc_is_zero_on_the_own_centre_and_two_opposite():
    obj = MAT(K, d=D).double()
    y = torch.arange(K)
    mu = obj.centres.double()
    assert obj.ftc(3.0 * mu, y).tolist() == pytest.approx([0.0] * K, abs=1e-12)
    assert obj.ftc(-mu, y).tolist() == pytest.approx([2.0] * K, abs=1e-12)
    assert obj.so(3.0 * mu, y).tolist() == pytest.approx([0.0] * K, abs=1e-12)


def test_so_closed_form_equals_squared_autograd_gradient_norm():
    """L_SO = ‖∇_φ L_FTC‖² with φ the network output (spec §1.5, Eqs. 6–7), checked on a tiny model:
    autograd of the FTC with respect to the features, against the closed form (1 − cos²)/‖φ‖²
    and against the literal Eq. 6."""
    torch.manual_seed(0)
    model = TinyNet().double().train()
    obj = MAT(K, d=D, c=2.0).double()
    x, y = images(), torch.arange(10) % K
    phi = model(x)
    # each sample's FTC depends on its own φ_b only, so the gradient of the sum holds every per-sample gradient
    (grad,) = torch.autograd.grad(obj.ftc(phi, y).sum(), phi)
    autograd_so = grad.pow(2).sum(1)
    closed = obj.so(phi, y)
    assert closed.detach().numpy() == pytest.approx(autograd_so.numpy(), rel=1e-9, abs=1e-14)
    # Eq. 6 as printed: ‖(1/‖φ‖)[μ_y/‖μ_y‖ − cos·φ/‖φ‖]‖²; Eq. 7's gradient is minus that bracket
    phi = phi.detach()
    norm = phi.norm(dim=1, keepdim=True)
    mu = obj.centres[y]
    cos = (phi * mu).sum(1, keepdim=True) / (norm * mu.norm(dim=1, keepdim=True))
    bracket = (mu / mu.norm(dim=1, keepdim=True) - cos * phi / norm) / norm
    assert closed.detach().numpy() == pytest.approx(bracket.pow(2).sum(1).numpy(), rel=1e-9, abs=1e-14)
    assert grad.numpy() == pytest.approx((-bracket).numpy(), rel=1e-9, abs=1e-12)
    # the gradient is orthogonal to φ (so SO can also be lowered by growing ‖φ‖, spec P4)
    assert (grad * phi).sum(1).abs().max().item() < 1e-12


def test_so_floor_keeps_zero_latents_finite():
    obj = MAT(K, d=D)
    z = torch.zeros(3, D, requires_grad=True)
    y = torch.tensor([0, 1, 2])
    so = obj.so(z, y)
    assert torch.isfinite(so).all() and so.max().item() <= 1 / NORM_FLOOR
    obj.loss(z, y).loss.backward()
    assert torch.isfinite(z.grad).all()


# --- BIBO's inner PGD ------------------------------------------------------------------------------
def bn_state(model):
    return {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}


@pytest.mark.parametrize("eps,step,steps", [(0.3, 0.01, 40), (0.05, 0.04, 3), (0.0, 0.01, 2)])
def test_bibo_example_stays_in_the_ball_and_leaves_the_model_alone(eps, step, steps):
    torch.manual_seed(0)
    model = TinyNet(dropout=0.3).double()
    model.train()
    model(images(seed=5))  # running statistics away from their initial values
    before_bn = bn_state(model)
    before_w = {k: v.clone() for k, v in model.state_dict().items()}
    obj = MAT(K, d=D, bibo_eps=eps, bibo_step=step, bibo_steps=steps).double()
    x = images()
    x_adv = obj.bibo_example(model, x)
    assert x_adv.shape == x.shape and not x_adv.requires_grad
    assert (x_adv - x).abs().max().item() <= eps + 1e-12
    assert x_adv.min().item() >= 0.0 and x_adv.max().item() <= 1.0
    assert model.training and all(m.training for m in model.modules())
    after = model.state_dict()
    for k, v in before_bn.items():
        assert torch.equal(after[k], v), k  # BatchNorm statistics untouched (eval mode inside)
    for k, v in before_w.items():
        assert torch.equal(after[k], v), k
    assert all(p.grad is None for p in model.parameters())  # gradients w.r.t. the input only


def test_bibo_example_restores_mixed_module_modes():
    model = TinyNet().double().train()
    model.conv[1].eval()  # e.g. a frozen BatchNorm
    MAT(K, d=D, bibo_steps=2).double().bibo_example(model, images())
    assert model.training and not model.conv[1].training and model.fc[1].training
    model.eval()
    MAT(K, d=D, bibo_steps=2).double().bibo_example(model, images())
    assert not any(m.training for m in model.modules())


def test_bibo_example_increases_the_cosine_distance():
    """The PGD maximises CD(φ(x), φ(x')): far above what the 0.001·N(0, I) random start gives."""
    torch.manual_seed(0)
    model = TinyNet().double()
    model.train()
    model(images(seed=3))
    x = images(n=16)
    obj = MAT(K, d=D, bibo_eps=0.1, bibo_step=0.02, bibo_steps=10).double()
    x_adv = obj.bibo_example(model, x)
    model.eval()
    with torch.no_grad():
        clean = model(x)
        adv = obj.cosine_distance(clean, model(x_adv))
        start = obj.cosine_distance(clean, model((x + BIBO_START_STD * torch.randn_like(x)).clamp(0, 1)))
    assert adv.min().item() > 0
    assert adv.mean().item() > 20 * start.mean().item()


def test_bibo_example_is_per_sample(monkeypatch):
    """Batched PGD = the PGD of each sample alone (eval mode: no batch statistics couple them)."""
    torch.manual_seed(0)
    model = TinyNet().double().train()
    model(images(seed=3))
    obj = MAT(K, d=D, bibo_eps=0.1, bibo_step=0.02, bibo_steps=5).double()
    x = images(n=4)
    noise = torch.randn_like(x)  # one random start, shared by the batched and the one-by-one runs
    monkeypatch.setattr(torch, "randn_like", lambda t: noise.clone())
    together = obj.bibo_example(model, x)
    alone = []
    for b in range(len(x)):
        monkeypatch.setattr(torch, "randn_like", lambda t, b=b: noise[b:b + 1].clone())
        alone.append(obj.bibo_example(model, x[b:b + 1]))
    assert torch.allclose(together, torch.cat(alone), atol=1e-12)


# --- the training loss ------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
def test_variants_switch_parts(variant):
    torch.manual_seed(0)
    model = TinyNet().double().train()
    obj = MAT(K, d=D, variant=variant, alpha=0.5, beta=2.0, bibo_eps=0.1, bibo_step=0.05, bibo_steps=2).double()
    x, y = images(), torch.arange(10) % K
    out = obj.training_loss(model, x, y)
    expected = {"loss", "ftc"} | set(variant.split("+"))
    assert set(out.parts) == expected
    assert set(out.parts) <= set(MAT.PART_NAMES)
    total = out.parts["ftc"] + 0.5 * out.parts.get("so", 0) + 2.0 * out.parts.get("bibo", 0)
    assert out.loss.item() == pytest.approx(float(total), rel=1e-12)
    assert out.parts["loss"].item() == pytest.approx(out.loss.item(), rel=1e-12)
    assert all(not v.requires_grad for v in out.parts.values())
    assert model.training
    # z is the clean latents of the batch (train mode, batch statistics, no dropout here)
    assert torch.allclose(out.z, model(x), atol=1e-12)
    if "bibo" in variant:
        assert out.parts["bibo"].item() > 0


def test_training_loss_gradients_are_finite_and_reach_every_layer():
    torch.manual_seed(0)
    model = TinyNet(dropout=0.2).double().train()
    obj = MAT(K, d=D, bibo_eps=0.1, bibo_step=0.05, bibo_steps=3).double()
    x, y = images(), torch.arange(10) % K
    out = obj.training_loss(model, x, y)
    out.loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert model.mapper.weight.grad.abs().sum().item() > 0
    assert all(b.grad is None for b in obj.buffers())
    assert list(obj.parameters()) == []  # the centres are a buffer: never trained


def test_bibo_outer_term_reaches_both_clean_and_adversarial_branches():
    torch.manual_seed(0)
    model = TinyNet().double().train()
    obj = MAT(K, d=D, variant="ftc+bibo", bibo_eps=0.1, bibo_step=0.05, bibo_steps=2).double()
    x = images()
    x_adv = obj.bibo_example(model, x)
    z = model(x)
    z_adv = model(x_adv)
    bibo = obj.cosine_distance(z, z_adv).mean()
    g_clean, g_adv = torch.autograd.grad(bibo, (z, z_adv))
    assert g_clean.abs().sum().item() > 0 and g_adv.abs().sum().item() > 0


# --- logits, prediction, centres, attacks, diagnostics --------------------------------------------------
@pytest.mark.parametrize("k,d,c", [(10, 64, 1.0), (10, 9, 3.0), (3, 2, 1.0), (K, D, 0.5)])
def test_centres_logits_and_prediction(k, d, c):
    obj = MAT(k, d=d, c=c).double()
    mu = obj.centres.double()
    assert mu.shape == (k, d) and obj.latent_dim == d
    assert torch.equal(obj.geometry(), obj.centres)
    assert "centres" in obj.state_dict() and list(obj.parameters()) == []
    assert mu.norm(dim=1).numpy() == pytest.approx([c] * k, rel=1e-6)
    gram = (mu @ mu.T) / c**2
    off = gram[~torch.eye(k, dtype=torch.bool)]
    assert off.numpy() == pytest.approx([-1 / (k - 1)] * (k * k - k), abs=1e-6)
    assert mu.sum(0).abs().max().item() < 1e-5
    z, y = batch(n=50, d=d, k=k, seed=3)
    logits = obj.logits(z)
    assert logits.shape == (50, k)
    assert logits.numpy() == pytest.approx((z @ mu.T).numpy(), rel=1e-6, abs=1e-6)
    # h_l = C‖z‖cos(z, μ_l): same argmax as the cosine (Eqs. 10–11)
    cos = hand_cosines(z.numpy(), mu.numpy())
    assert logits.numpy() == pytest.approx(c * z.norm(dim=1, keepdim=True).numpy() * cos, rel=1e-6, abs=1e-6)
    assert obj.predict(z).tolist() == cos.argmax(1).tolist()
    assert torch.equal(obj.predict(z), logits.argmax(1))


def test_centre_norm_only_scales_logits():
    z, y = batch()
    a, b = MAT(K, d=D, c=1.0).double(), MAT(K, d=D, c=10.0).double()
    assert a.loss(z, y).loss.item() == pytest.approx(b.loss(z, y).loss.item(), rel=1e-6)
    assert torch.equal(a.predict(z), b.predict(z))
    assert (b.logits(z) / a.logits(z)).numpy() == pytest.approx(np.full((len(z), K), 10.0), rel=1e-5)


def test_adaptive_objective():
    z, y = batch()
    z_clean = z + 0.3 * torch.randn_like(z)
    target = (y + 1) % K
    full = MAT(K, d=D, alpha=0.5, beta=3.0).double()
    assert full.adaptive_objective(z, y).numpy() == pytest.approx(
        (full.ftc(z, y) + 0.5 * full.so(z, y)).numpy(), rel=1e-12)
    assert full.adaptive_objective(z, y, z_clean=z_clean).numpy() == pytest.approx(
        (full.ftc(z, y) + 0.5 * full.so(z, y) + 3.0 * full.cosine_distance(z_clean, z)).numpy(), rel=1e-12)
    assert full.adaptive_objective(z, y, target).numpy() == pytest.approx((-full.ftc(z, target)).numpy(), rel=1e-12)
    plain = MAT(K, d=D, variant="ftc", alpha=0.5, beta=3.0).double()
    assert plain.adaptive_objective(z, y, z_clean=z_clean).numpy() == pytest.approx(plain.ftc(z, y).numpy())
    bibo = MAT(K, d=D, variant="ftc+bibo", beta=3.0).double()
    assert bibo.adaptive_objective(z, y, z_clean=z_clean).numpy() == pytest.approx(
        (bibo.ftc(z, y) + 3.0 * bibo.cosine_distance(z_clean, z)).numpy(), rel=1e-12)
    # differentiable per sample, as a PGD on it needs
    zz = z.clone().requires_grad_(True)
    full.adaptive_objective(zz, y).sum().backward()
    assert torch.isfinite(zz.grad).all() and zz.grad.abs().sum() > 0


def test_diagnostics():
    z, y = batch()
    obj = MAT(K, d=D).double()
    cos = hand_cosines(z.numpy(), obj.centres.double().numpy())
    diag = obj.diagnostics(z, y)
    assert diag["mean_norm_z"] == pytest.approx(float(np.linalg.norm(z.numpy(), axis=1).mean()), rel=1e-9)
    assert diag["mean_cos_own_centre"] == pytest.approx(float(cos[np.arange(len(y)), y.numpy()].mean()), rel=1e-9)
    assert diag["mean_cos_pred_centre"] == pytest.approx(float(cos.max(1).mean()), rel=1e-9)


def test_half_precision_latents_compute_in_float32():
    z, y = batch(dtype=torch.float32)
    obj = MAT(K, d=D)
    out = obj.loss(z.half(), y)
    assert out.loss.dtype == torch.float32
    assert out.loss.item() == pytest.approx(obj.loss(z, y).loss.item(), rel=1e-2)


# --- settings ----------------------------------------------------------------------------------
def test_defaults():
    obj = MAT(10)
    assert obj.params == {"d": 64, "c": 1.0, "alpha": 1.0, "beta": 6.0, "variant": "ftc+so+bibo",
                          "bibo_eps": 0.3, "bibo_step": 0.01, "bibo_steps": 40}
    assert obj.latent_dim == 64 and obj.use_so and obj.use_bibo
    assert MAT.param_warnings(10, {}) == []


@pytest.mark.parametrize("params,field", [
    ({"variant": "so"}, "mat.variant"),
    ({"alpha": -1}, "mat.alpha"),
    ({"beta": "lots"}, "mat.beta"),
    ({"c": 0}, "mat.c"),
    ({"d": 2.5}, "mat.d"),
    ({"d": 3}, "mat.d"),  # below K − 1 = 4
    ({"bibo_eps": 1.5}, "mat.bibo_eps"),
    ({"bibo_step": 0}, "mat.bibo_step"),
    ({"bibo_steps": 0}, "mat.bibo_steps"),
    ({"bibo_steps": float("nan")}, "mat.bibo_steps"),
])
def test_bad_params_name_the_field(params, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        MAT(K, **params)


def test_unknown_param_is_refused():
    with pytest.raises(ConfigError, match="unknown constant 'lam' for objective 'mat'"):
        MAT(K, lam=1)


def test_param_warnings():
    assert any("mat.d" in w for w in MAT.param_warnings(10, {"d": 5}))
    assert any("mat.alpha" in w for w in MAT.param_warnings(10, {"alpha": 0}))
    assert MAT.param_warnings(10, {"alpha": 0, "variant": "ftc+bibo"}) == []
    assert any("mat.beta" in w for w in MAT.param_warnings(10, {"beta": 0}))
    assert any("mat.bibo_eps" in w for w in MAT.param_warnings(10, {"bibo_steps": 3}))  # 3 × 0.01 < 0.3
    assert MAT.param_warnings(10, {"bibo_steps": 3, "variant": "ftc+so"}) == []


# --- a real training run -------------------------------------------------------------------------
def test_trains_on_digits(monkeypatch):
    """MAT (FTC + SO + BIBO) learns the scikit-learn digits well above chance in a few seconds.

    Settings that differ from the defaults, and why: the cosine losses are scale-invariant (their
    gradients shrink as 1/‖z‖ while ‖z‖ grows), so plain SGD at lr 0.01 learns slowly (FTC alone:
    ~83 % after 15 epochs) and Adam at lr 0.01 is used; with β = 6 the BIBO term first drives the
    features towards a constant (accuracy ~30–45 % after 15 epochs, ~94 % only after 60), so β = 1;
    and a cheap inner PGD (3 steps) with ε = 0.1, as ε = 0.3 is large for 8×8 digits.
    """
    monkeypatch.setitem(engine.objectives.OBJECTIVES, "mat", MAT)
    from engine.config import ObjectiveSpec, TrainConfig
    from engine.train import train_job

    params = {"beta": 1.0, "bibo_eps": 0.1, "bibo_step": 0.04, "bibo_steps": 3}
    # One intra-op thread: these ops are tiny, and on a busy machine two spinning OpenMP threads made
    # this run 40× slower (4 s → 3 min); the result does not depend on it.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        started = time.perf_counter()
        (rec,) = train_job(TrainConfig(dataset="digits", model="cnn", objectives=(ObjectiveSpec("mat", params),),
                                       epochs=15, optimizer="adam", lr=0.01, device="cpu"))
        seconds = time.perf_counter() - started
    finally:
        torch.set_num_threads(threads)
    assert seconds < 30
    assert rec["final"]["test_acc"] > 0.7
    assert rec["latent_dim"] == 64
    assert set(rec["history"][-1]["loss"]) == {"loss", "ftc", "so", "bibo"}
    assert rec["final"]["diagnostics"]["mean_cos_own_centre"] > 0.5
    assert np.asarray(rec["geometry"]).shape == (10, 64)


# --- the adaptive attack passes the clean latents (BIBO term, spec §2.3) -----------------------------------
def test_only_bibo_variants_use_clean_latents():
    assert MAT(K, d=D).uses_clean_latents and MAT(K, d=D, variant="ftc+bibo").uses_clean_latents
    assert not MAT(K, d=D, variant="ftc+so").uses_clean_latents and not MAT(K, d=D, variant="ftc").uses_clean_latents
    assert not MAT(K, d=D, beta=0.0).uses_clean_latents
    assert not engine.objectives.build_objective("ce", K, {}).uses_clean_latents


def test_adaptive_pgd_includes_the_bibo_term_with_the_clean_latents():
    from engine.attacks import AdaptivePGD, LogitsModel

    torch.manual_seed(0)
    net = TinyNet().double().eval()
    mat = MAT(K, d=D, alpha=0.5, beta=3.0).double().eval()
    x, y = images(), torch.arange(10) % K
    attack = AdaptivePGD(LogitsModel(net, mat).eval(), eps=0.1, alpha=0.02, steps=3)
    seen = []
    original = mat.adaptive_objective

    def spy(z, y, target=None, **kwargs):
        seen.append(kwargs.get("z_clean"))
        return original(z, y, target, **kwargs)

    mat.adaptive_objective = spy
    x_adv = attack(x, y)
    assert len(seen) == 3 and all(z is not None for z in seen)
    with torch.no_grad():
        clean = net(x)
    assert all(torch.equal(z, clean) and not z.requires_grad for z in seen)  # computed once, detached
    # the value the attack ascends differs from the one without the clean latents by β·CD(φ(x), φ(x'))
    with torch.no_grad():
        z_adv = net(x_adv)
    assert attack.value(x_adv, y, None).detach().numpy() == pytest.approx(
        (original(z_adv, y) + 3.0 * mat.cosine_distance(clean, z_adv)).numpy(), rel=1e-9)
    assert not torch.allclose(attack.value(x_adv, y, None), original(z_adv, y))
    # a variant without BIBO gets no clean latents
    del mat.adaptive_objective
    so_only = MAT(K, d=D, variant="ftc+so").double().eval()
    attack = AdaptivePGD(LogitsModel(net, so_only).eval(), eps=0.1, alpha=0.02, steps=1)
    so_only.adaptive_objective = lambda z, y, target=None, **kwargs: seen.append(kwargs) or so_only.ftc(z, y)
    attack(x, y)
    assert seen[-1] == {}
