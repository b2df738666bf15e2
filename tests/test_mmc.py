"""MMC against independent computations: hand-made centres and batches, numpy loops, the paper's formulas."""
import functools
import io
import math

import numpy as np
import pytest
import torch

import engine.objectives
from engine.objectives import ConfigError
from engine.objectives import mmc as mmc_module
from engine.objectives.centres import max_mahalanobis_centres
from engine.objectives.mmc import MMC

C = 10.0
# K = 3, d = 2 ≥ K − 1: Algorithm 1 gives an equilateral triangle with μ*_1 = C·e_1 (MMC App. B.1, Fig. 5).
TRIANGLE = C * np.array([[1.0, 0.0], [-0.5, math.sqrt(3) / 2], [-0.5, -math.sqrt(3) / 2]])


def random_batch(k, d, n=64, scale=5.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(n, d, generator=g), torch.randint(0, k, (n,), generator=g)


def loop_half_sq(z, centres, labels):
    """½‖z_b − μ_{labels_b}‖² by explicit loops over samples and coordinates."""
    out = []
    for b in range(len(z)):
        out.append(0.5 * sum((float(z[b][j]) - float(centres[labels[b]][j])) ** 2 for j in range(len(z[b]))))
    return np.array(out)


def loop_logits(z, centres):
    return np.array([[-0.5 * sum((float(z[b][j]) - float(centres[l][j])) ** 2 for j in range(len(z[b])))
                      for l in range(len(centres))] for b in range(len(z))])


# --- centres ---------------------------------------------------------------------------------------
def test_centres_are_the_hand_made_simplex():
    assert MMC(3, d=2).centres.numpy() == pytest.approx(TRIANGLE, abs=1e-5)
    # K = 2, d = 1: the two ends of a segment.
    assert MMC(2, d=1, c_mm=4.0).centres.numpy() == pytest.approx(np.array([[4.0], [-4.0]]), abs=1e-6)


def test_default_centres_have_the_paper_properties():
    obj = MMC(10)
    mu = obj.centres.double()
    assert obj.latent_dim == 256 and mu.shape == (10, 256)
    assert obj.params == {"c_mm": 10.0, "d": 256, "adaptive": "1"}
    assert mu.norm(dim=1).numpy() == pytest.approx(np.full(10, C), rel=1e-6)
    gram = (mu @ mu.T).numpy()
    off = gram[~np.eye(10, dtype=bool)]
    assert off == pytest.approx(np.full(90, -C**2 / 9), abs=1e-4)  # −11.11 (seed-mmc.md §1.6)
    assert mu.sum(0).abs().max() < 1e-4


def test_d_equal_two_builds_a_circle_and_warns():
    obj = MMC(10, d=2, c_mm=3.0)
    angles = np.arange(10) * 2 * math.pi / 10
    assert obj.centres.numpy() == pytest.approx(3.0 * np.stack([np.cos(angles), np.sin(angles)], 1), abs=1e-5)
    assert obj.latent_dim == 2
    warnings = MMC.param_warnings(10, {"d": 2})
    assert len(warnings) == 1 and "mmc.d" in warnings[0]


def test_d_below_k_minus_one_builds_numerically_and_warns(monkeypatch):
    # The real numerical construction, shortened (10,000 Adam steps take seconds; test_centres checks
    # that it converges): here only that MMC takes that path and gets K finite centres of norm C.
    monkeypatch.setattr(mmc_module, "max_mahalanobis_centres", functools.partial(max_mahalanobis_centres, steps=200))
    obj = MMC(5, d=3)
    mu = obj.centres.double()
    assert mu.shape == (5, 3) and torch.isfinite(mu).all()
    assert mu.norm(dim=1).numpy() == pytest.approx(np.full(5, C), rel=1e-5)
    assert "mmc.d" in MMC.param_warnings(5, {"d": 3})[0]
    assert MMC.param_warnings(5, {"d": 4}) == [] and MMC.param_warnings(10, {}) == []


def test_centres_buffer_is_fixed_saved_and_reloaded():
    obj = MMC(4, d=6, c_mm=7.0)
    assert "centres" in obj.state_dict()
    assert list(obj.parameters()) == [] and list(obj.shared_parameters()) == []
    assert not obj.centres.requires_grad
    buffer = io.BytesIO()
    torch.save(obj.state_dict(), buffer)
    buffer.seek(0)
    other = MMC(4, d=6, c_mm=7.0)
    other.centres.zero_()
    other.load_state_dict(torch.load(buffer))
    assert torch.equal(other.centres, obj.centres)
    assert torch.equal(MMC(4, d=6, c_mm=7.0).centres, obj.centres)  # deterministic
    assert obj.geometry() is obj.centres


def test_centres_do_not_move_during_optimisation():
    obj = MMC(3, d=2)
    before = obj.centres.clone()
    z = torch.randn(8, 2, requires_grad=True)
    y = torch.arange(8) % 3
    opt = torch.optim.SGD([z, *obj.parameters()], lr=0.1)
    for _ in range(5):
        opt.zero_grad()
        obj.loss(z, y).loss.backward()
        opt.step()
    assert torch.equal(obj.centres, before)


# --- loss, logits, prediction ----------------------------------------------------------------------
def test_loss_on_a_hand_made_batch():
    # centres ±10 on a line: ½·(7 − 10)² = 4.5 and ½·(−2 + 10)² = 32, averaged over the batch
    obj = MMC(2, d=1)
    out = obj.loss(torch.tensor([[7.0], [-2.0]]), torch.tensor([0, 1]))
    assert out.loss.item() == pytest.approx(18.25, rel=1e-6)
    assert set(out.parts) == {"loss"} and out.parts["loss"].item() == pytest.approx(18.25, rel=1e-6)
    assert not out.parts["loss"].requires_grad


@pytest.mark.parametrize("k,d", [(3, 2), (5, 7), (10, 16)])
def test_loss_equals_a_loop_computation(k, d):
    obj = MMC(k, d=d).double()
    z, y = random_batch(k, d, n=23)
    z = z.double()
    expected = loop_half_sq(z.tolist(), obj.centres.tolist(), y.tolist()).mean()
    assert obj.loss(z, y).loss.item() == pytest.approx(expected, rel=1e-12)
    # sum over dimensions, not a mean (F.mse_loss would divide by d: seed-mmc.md §2.3, pitfall 1)
    assert obj.loss(z, y).loss.item() == pytest.approx(
        0.5 * d * torch.nn.functional.mse_loss(z, obj.centres[y], reduction="none").mean(1).mean().item(), rel=1e-12)


def test_logits_and_nearest_centre_prediction():
    obj = MMC(3, d=2)
    z = torch.tensor([[9.0, 1.0], [-4.0, 6.0], [-6.0, -7.0], [0.0, 0.5], [1.0, -0.2]])
    logits = obj.logits(z)
    assert logits.shape == (5, 3)
    assert logits.numpy() == pytest.approx(loop_logits(z.tolist(), TRIANGLE), rel=1e-5)
    assert obj.predict(z).tolist() == [0, 1, 2, 1, 0]
    z, y = random_batch(10, 16, n=200, scale=8.0)
    obj = MMC(10, d=16)
    nearest = np.argmin(-2 * loop_logits(z.tolist(), obj.centres.tolist()), axis=1)
    assert obj.predict(z).numpy().tolist() == nearest.tolist()
    # equal norms: the nearest centre is also argmax zᵀμ* (a linear classifier, seed-mmc.md §1.7)
    assert obj.predict(z).tolist() == (z @ obj.centres.T).argmax(1).tolist()
    # the loss is −logit of the true class, averaged
    assert obj.loss(z, y).loss.item() == pytest.approx(-obj.logits(z).gather(1, y[:, None]).mean().item(), rel=1e-5)


def test_half_precision_latents_are_computed_in_float32():
    obj = MMC(3, d=2)
    z = torch.tensor([[9.0, 1.0], [-4.0, 6.0]], dtype=torch.float16)
    y = torch.tensor([0, 1])
    assert obj.loss(z, y).loss.dtype == torch.float32
    assert obj.logits(z).dtype == torch.float32


# --- adaptive attack objectives (MMC App. B.4, seed-mmc.md §4.2) --------------------------------------
def half_sq(z, c):
    return 0.5 * float(np.sum((np.asarray(z) - np.asarray(c)) ** 2))


def test_adaptive_one_matches_the_paper_formulas():
    obj = MMC(3, d=2)  # adaptive "1" by default: L^{un,1}, L^{tar,1}
    z = torch.tensor([[6.0, 2.0], [-3.0, 4.0]])
    y, t = torch.tensor([0, 1]), torch.tensor([2, 0])
    un = obj.adaptive_objective(z, y)
    tar = obj.adaptive_objective(z, y, t)
    # the attacker maximises −L_Ada: L^{un,1} = −L_MMC(z, y), L^{tar,1} = L_MMC(z, y_t)
    assert un.tolist() == pytest.approx([half_sq(z[0], TRIANGLE[0]), half_sq(z[1], TRIANGLE[1])], rel=1e-5)
    assert tar.tolist() == pytest.approx([-half_sq(z[0], TRIANGLE[2]), -half_sq(z[1], TRIANGLE[0])], rel=1e-5)


def test_adaptive_two_matches_the_paper_formulas():
    obj = MMC(3, d=2, adaptive="2")
    z = torch.tensor([[6.0, 2.0], [-3.0, 4.0], [-5.0, -1.0]])
    y, t = torch.tensor([0, 1, 2]), torch.tensor([2, 0, 0])
    un = obj.adaptive_objective(z, y)
    tar = obj.adaptive_objective(z, y, t)
    expected_un, expected_tar = [], []
    for b in range(3):
        own = half_sq(z[b], TRIANGLE[y[b]])
        # ỹ = argmax_{l≠y} h_l: the nearest other centre
        other = min(half_sq(z[b], TRIANGLE[l]) for l in range(3) if l != y[b])
        expected_un.append(own - other)  # −L^{un,2} = L_MMC(z, y) − L_MMC(z, ỹ)
        expected_tar.append(own - half_sq(z[b], TRIANGLE[t[b]]))  # −L^{tar,2}
    assert un.tolist() == pytest.approx(expected_un, rel=1e-5)
    assert tar.tolist() == pytest.approx(expected_tar, rel=1e-5)
    # equal norms: the difference forms are linear, zᵀ(μ_ỹ − μ_y) (seed-mmc.md §4.2)
    mu = torch.tensor(TRIANGLE, dtype=torch.float32)
    assert tar.tolist() == pytest.approx((z * (mu[t] - mu[y])).sum(1).tolist(), rel=1e-5, abs=1e-4)


@pytest.mark.parametrize("adaptive", ["1", "2"])
def test_adaptive_objectives_reward_the_attackers_goal(adaptive):
    obj = MMC(3, d=2, adaptive=adaptive)
    mu = obj.centres
    y, t = torch.tensor([0]), torch.tensor([1])
    z = mu[0:1] + torch.tensor([[0.5, 0.3]])  # near its own centre μ_0; μ_1 is the nearest other one
    towards = z + 0.2 * (mu[1:2] - z)  # away from μ_0, towards μ_1
    assert obj.adaptive_objective(towards, y) > obj.adaptive_objective(z, y)
    assert obj.adaptive_objective(towards, y, t) > obj.adaptive_objective(z, y, t)
    away = z + 0.5 * (z - mu[0:1])  # radially away from μ_0: (un,1) rewards it, (un,2) needs a wrong class
    assert (obj.adaptive_objective(away, y) > obj.adaptive_objective(z, y)) == (adaptive == "1")


def test_adaptive_gradient_directions_of_figure_6():
    mu = torch.tensor(TRIANGLE, dtype=torch.float32)
    z0 = torch.tensor([[4.0, 1.0]])
    y, t = torch.tensor([0]), torch.tensor([2])

    def grad(adaptive, target=None):
        z = z0.clone().requires_grad_(True)
        MMC(3, d=2, adaptive=adaptive).adaptive_objective(z, y, target).sum().backward()
        return z.grad[0]

    assert grad("1").tolist() == pytest.approx((z0[0] - mu[0]).tolist(), rel=1e-5)  # away from μ_y
    assert grad("1", t).tolist() == pytest.approx((mu[2] - z0[0]).tolist(), rel=1e-5)  # toward μ_{y_t}
    assert grad("2", t).tolist() == pytest.approx((mu[2] - mu[0]).tolist(), rel=1e-5)  # toward μ_t, from μ_y
    assert grad("2").tolist() == pytest.approx((mu[1] - mu[0]).tolist(), rel=1e-5)  # ỹ = 1 is nearer than 2


@pytest.mark.parametrize("k,d,adaptive", [(3, 2, "1"), (10, 16, "2"), (10, 2, "2"), (4, 256, "1")])
def test_finite_gradients_on_random_batches(k, d, adaptive):
    obj = MMC(k, d=d, adaptive=adaptive)
    for seed, scale in [(0, 1.0), (1, 100.0), (2, 1e-3)]:
        z, y = random_batch(k, d, n=50, scale=scale, seed=seed)
        z.requires_grad_(True)
        t = (y + 1) % k
        total = (obj.loss(z, y).loss + obj.logits(z).sum() + obj.adaptive_objective(z, y).sum()
                 + obj.adaptive_objective(z, y, t).sum())
        grad, = torch.autograd.grad(total, z)
        assert torch.isfinite(total) and torch.isfinite(grad).all()
    # z exactly on a centre: zero loss and zero gradient, no NaN
    z = obj.centres[:2].clone().requires_grad_(True)
    loss = obj.loss(z, torch.tensor([0, 1])).loss
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(z.grad, torch.zeros_like(z))


def test_diagnostics():
    obj = MMC(2, d=1)
    diag = obj.diagnostics(torch.tensor([[7.0], [-2.0]]), torch.tensor([0, 1]))
    assert diag == pytest.approx({"mean_norm_z": 4.5, "mean_dist_own_centre": 5.5})


# --- settings ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("params,field", [
    ({"c_mm": 0}, "mmc.c_mm"), ({"c_mm": -1.0}, "mmc.c_mm"), ({"c_mm": "x"}, "mmc.c_mm"),
    ({"c_mm": float("nan")}, "mmc.c_mm"), ({"d": 0}, "mmc.d"), ({"d": 1.5}, "mmc.d"), ({"d": "big"}, "mmc.d"),
    ({"adaptive": "3"}, "mmc.adaptive"), ({"adaptive": 1}, "mmc.adaptive"),
])
def test_bad_params_name_the_field(params, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        MMC(10, **params)


def test_unknown_param_and_casts():
    with pytest.raises(ConfigError, match="c_mm, d, adaptive"):
        MMC(10, mu_t=3)
    obj = MMC(10, c_mm=5, d=12.0)
    assert obj.params["c_mm"] == 5.0 and isinstance(obj.params["c_mm"], float)
    assert obj.params["d"] == 12 and isinstance(obj.params["d"], int) and obj.latent_dim == 12


# --- training on the real data -----------------------------------------------------------------------
def test_short_training_on_digits_beats_chance(monkeypatch):
    monkeypatch.setitem(engine.objectives.OBJECTIVES, "mmc", MMC)
    from engine.config import ObjectiveSpec, TrainConfig
    from engine.train import train_job

    record, = train_job(TrainConfig(dataset="digits", model="cnn", objectives=(ObjectiveSpec("mmc", {"d": 16}),),
                                    epochs=10, device="cpu"))
    assert record["latent_dim"] == 16
    assert record["final"]["test_acc"] > 0.8  # chance is 0.1; measured ≈ 0.98 (default lr 0.01)
    losses = [h["loss"]["loss"] for h in record["history"]]
    assert losses[-1] < 0.5 * losses[0]
    diag = record["final"]["diagnostics"]
    assert diag["mean_dist_own_centre"] < 0.5 * C  # the latents gathered around their centres
    assert np.asarray(record["geometry"]) == pytest.approx(MMC(10, d=16).centres.numpy())


def test_fast_prediction_agrees_with_the_logits_argmax():
    obj = MMC(10, d=32)
    z = torch.randn(500, 32) * 6
    assert torch.equal(obj.predict(z), obj.logits(z).argmax(1))
