"""GCCS against independent computations: torch.distributions KL, scipy kurtosis, numpy by hand."""
import math

import numpy as np
import pytest
import scipy.stats
import torch
from torch.distributions import MultivariateNormal, kl_divergence

from engine.objectives import ConfigError, build_objective
from engine.objectives import gccs as gccs_module
from engine.objectives.gccs import GCCS, RIDGE, VARIANCE_FLOOR

K = 4


@pytest.fixture(autouse=True, params=["numpy", "torch"])
def backend(request, monkeypatch):
    """Every test runs on both implementations of the statistics (numpy is the CPU default)."""
    monkeypatch.setattr(gccs_module, "CPU_BACKEND", request.param)
    return request.param


def batch(counts, scale=3.0, seed=0, mu_t=70.0):
    """Latents near their vertices with the given number of samples per class."""
    g = torch.Generator().manual_seed(seed)
    y = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    z = mu_t * torch.eye(len(counts))[y] + scale * torch.randn(len(y), len(counts), generator=g, dtype=torch.float64)
    return z.double(), y


def reference_kl(zc: torch.Tensor, target: torch.Tensor, sigma_t: float, full: bool) -> float:
    """2·KL(N(μ_O, Σ_O) ‖ N(target, σ_T² I)) by torch.distributions; Σ_O as the spec defines it."""
    d = zc.shape[1]
    mean = zc.mean(0)
    if full:
        cov = torch.cov(zc.T, correction=1) + RIDGE * sigma_t**2 * torch.eye(d, dtype=zc.dtype)
    else:
        cov = torch.diag(zc.var(0, correction=1).clamp(min=VARIANCE_FLOOR))
    p = MultivariateNormal(mean, covariance_matrix=cov)
    q = MultivariateNormal(target, covariance_matrix=sigma_t**2 * torch.eye(d, dtype=zc.dtype))
    return 2 * float(kl_divergence(p, q))


def reference_kurtosis(zc: np.ndarray) -> float:
    return float(np.mean(scipy.stats.kurtosis(zc, axis=0, fisher=False, bias=True)))


@pytest.mark.parametrize("covariance", ["auto", "full", "diag"])
@pytest.mark.parametrize("sigma_t", [1.0, 2.5])
def test_kl_term_equals_twice_torch_kl(covariance, sigma_t):
    counts = [12, 3, 7, 20]  # class 1 has n ≤ K: diagonal in auto mode
    z, y = batch(counts)
    obj = GCCS(K, mu_t=70.0, sigma_t=sigma_t, covariance=covariance).double()
    kl, kurt, active = obj.class_terms(z, y)
    for c, n in enumerate(counts):
        full = covariance == "full" or (covariance == "auto" and n > K)
        expected = reference_kl(z[y == c], 70.0 * torch.eye(K, dtype=z.dtype)[c], sigma_t, full)
        assert kl[c].item() == pytest.approx(expected, rel=1e-9, abs=1e-6), (c, n, covariance)
        assert kurt[c].item() == pytest.approx(reference_kurtosis(z[y == c].numpy()), rel=1e-9)
    assert active.all()


@pytest.mark.parametrize("kurtosis", ["abs", "literal"])
def test_total_is_sum_over_classes_of_kl_plus_kurtosis_term(kurtosis):
    counts = [15, 9, 2, 30]
    z, y = batch(counts, seed=3)
    lam = 0.2
    obj = GCCS(K, lam=lam, kurtosis=kurtosis).double()
    out = obj.loss(z, y)
    expected_kl, expected_kurt = 0.0, 0.0
    for c, n in enumerate(counts):
        zc = z[y == c]
        expected_kl += reference_kl(zc, 70.0 * torch.eye(K, dtype=z.dtype)[c], 1.0, n > K)
        excess = reference_kurtosis(zc.numpy()) - 3
        expected_kurt += lam * (abs(excess) if kurtosis == "abs" else excess)
    assert out.parts["kl"].item() == pytest.approx(expected_kl, rel=1e-9)
    assert out.parts["kurtosis"].item() == pytest.approx(expected_kurt, rel=1e-9, abs=1e-12)
    assert out.parts["loss"].item() == pytest.approx(expected_kl + expected_kurt, rel=1e-9)
    # the optimiser gets the paper's sum divided by the batch size (spec §3, decision 4)
    assert out.loss.item() == pytest.approx((expected_kl + expected_kurt) / len(y), rel=1e-9)


def test_literal_kurtosis_rewards_low_kurtosis_and_abs_penalises_it():
    # two samples per class: kurtosis m4/m2² is exactly 1, so K − 3 = −2
    z, y = batch([2, 2, 2, 2], seed=1)
    literal = GCCS(K, kurtosis="literal").double().loss(z, y).parts["kurtosis"].item()
    absolute = GCCS(K, kurtosis="abs").double().loss(z, y).parts["kurtosis"].item()
    assert literal == pytest.approx(-2 * 0.2 * K)
    assert absolute == pytest.approx(+2 * 0.2 * K)


def test_gaussian_latents_on_their_vertices_give_a_small_loss_and_kurtosis_near_three():
    counts = [4000] * K
    z, y = batch(counts, scale=1.0, seed=7)  # exactly the target distributions N(μ_T e_i, I)
    obj = GCCS(K).double()
    kl, kurt, _ = obj.class_terms(z, y)
    assert kl.abs().max().item() < 0.05
    assert torch.allclose(kurt, torch.full_like(kurt, 3.0), atol=0.2)
    far, _ = batch(counts, scale=1.0, seed=7, mu_t=60.0)
    assert obj.class_terms(far, y)[0].min().item() > 90  # ‖10·e_i‖² = 100 for the mean term alone


def test_class_with_one_sample_contributes_nothing():
    z, y = batch([10, 1, 8, 6], seed=2)
    obj = GCCS(K).double()
    with_single = obj.loss(z, y).parts["loss"].item()
    keep = y != 1
    without = obj.loss(z[keep], y[keep]).parts["loss"].item()
    assert with_single == pytest.approx(without, rel=1e-12)
    _, _, active = obj.class_terms(z, y)
    assert active.tolist() == [True, False, True, True]


def test_absent_classes_and_single_class_batch():
    z, y = batch([0, 5, 0, 0], seed=4)
    out = GCCS(K).double().loss(z, y)
    assert math.isfinite(out.loss.item())
    z1, y1 = batch([1, 0, 0, 0])
    out1 = GCCS(K).double().loss(z1, y1)
    assert out1.parts["loss"].item() == 0.0  # nothing to estimate: no term at all


@pytest.mark.parametrize("covariance", ["auto", "full", "diag"])
@pytest.mark.parametrize("kurtosis", ["abs", "literal"])
@pytest.mark.parametrize("counts", [[2, 2, 2, 2], [3, 5, 1, 4], [40, 30, 20, 10], [6, 0, 6, 1]])
def test_gradient_is_finite_in_every_mode(covariance, kurtosis, counts):
    z, y = batch(counts, seed=5)
    z = z.float().requires_grad_(True)
    out = GCCS(K, covariance=covariance, kurtosis=kurtosis).loss(z, y)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert torch.isfinite(z.grad).all()


def test_gradient_is_finite_for_collapsed_latents():
    # identical points in a class: zero variance, floored (diag) or ridged (full)
    y = torch.tensor([0] * 6 + [1] * 6 + [2] * 6 + [3] * 6)
    for covariance in ("auto", "full", "diag"):
        z = torch.ones(len(y), K, requires_grad=True)
        out = GCCS(K, covariance=covariance).loss(z, y)
        out.loss.backward()
        assert torch.isfinite(out.loss) and torch.isfinite(z.grad).all(), covariance


def test_gradient_matches_finite_differences():
    z, y = batch([6, 5, 7, 3], seed=9)
    obj = GCCS(K, mu_t=5.0).double()
    z = (z / 14).requires_grad_(True)  # latents near the smaller vertices
    assert torch.autograd.gradcheck(lambda t: obj.loss(t, y).loss, (z,), eps=1e-6, atol=1e-5)


def test_geometry_prediction_and_adaptive_objective():
    obj = GCCS(3, mu_t=10.0)
    assert torch.equal(obj.geometry(), 10.0 * torch.eye(3))
    z = torch.tensor([[9.0, 1.0, 0.0], [0.0, 0.5, 11.0]])
    assert obj.predict(z).tolist() == [0, 2]
    y = torch.tensor([0, 2])
    assert obj.adaptive_objective(z, y).tolist() == pytest.approx([2.0, 1.25])
    target = torch.tensor([1, 1])
    assert obj.adaptive_objective(z, y, target).tolist() == pytest.approx([-(81 + 81.0), -(90.25 + 121)])
    assert obj.latent_dim == 3
    assert "vertices" in obj.state_dict()  # fixed geometry travels with the checkpoint


def test_separability_warning_names_the_parameters():
    assert GCCS.param_warnings(10, {"mu_t": 70.0}) == []
    warning = GCCS.param_warnings(10, {"mu_t": 4.0, "sigma_t": 1.0})
    assert len(warning) == 1 and "gccs.mu_t / gccs.sigma_t" in warning[0] and "√(2K)" in warning[0]


@pytest.mark.parametrize("params, field", [({"mu_t": 0}, "gccs.mu_t"), ({"sigma_t": -1}, "gccs.sigma_t"),
                                           ({"lam": -0.1}, "gccs.lam"), ({"kurtosis": "square"}, "gccs.kurtosis"),
                                           ({"covariance": "banded"}, "gccs.covariance"),
                                           ({"mu_t": "seventy"}, "gccs.mu_t"), ({"nope": 1}, "nope")])
def test_bad_constants_name_the_field_and_allowed_values(params, field):
    with pytest.raises(ConfigError) as err:
        build_objective("gccs", 10, params)
    assert field in str(err.value)
    if "kurtosis" in params:
        assert "abs, literal" in str(err.value)


def reference_loss(z: torch.Tensor, y: torch.Tensor, counts, lam: float, covariance: str) -> torch.Tensor:
    """The paper's sum written the slow, obvious way: a loop over classes, torch.distributions for the
    KL part, autograd for everything."""
    total = z.new_zeros(())
    for c, n in enumerate(counts):
        if n < 2:
            continue
        zc = z[y == c]
        mean = zc.mean(0)
        full = covariance == "full" or (covariance == "auto" and n > K)
        if full:
            cov = torch.cov(zc.T, correction=1) + RIDGE * torch.eye(K, dtype=z.dtype)
        else:
            cov = torch.diag(zc.var(0, correction=1).clamp(min=VARIANCE_FLOOR))
        p = MultivariateNormal(mean, covariance_matrix=cov)
        q = MultivariateNormal(70.0 * torch.eye(K, dtype=z.dtype)[c], covariance_matrix=torch.eye(K, dtype=z.dtype))
        centred = zc - mean
        m2 = (centred**2).mean(0).clamp(min=VARIANCE_FLOOR)
        kurt = ((centred**4).mean(0) / m2**2).mean()
        total = total + 2 * kl_divergence(p, q) + lam * (kurt - 3).abs()
    return total / len(y)


@pytest.mark.parametrize("covariance", ["auto", "full", "diag"])
@pytest.mark.parametrize("counts", [[12, 3, 7, 20], [6, 6, 6, 6], [2, 9, 1, 5]])
def test_gradient_equals_autograd_through_torch_distributions(covariance, counts):
    z, y = batch(counts, seed=11)
    ours = z.clone().requires_grad_(True)
    GCCS(K, covariance=covariance).double().loss(ours, y).loss.backward()
    ref = z.clone().requires_grad_(True)
    reference_loss(ref, y, counts, 0.2, covariance).backward()
    assert torch.allclose(ours.grad, ref.grad, rtol=1e-7, atol=1e-10)


def test_float32_backends_agree():
    z, y = batch([30, 25, 3, 40], seed=12)
    z = z.float()
    grads = {}
    for name in ("numpy", "torch"):
        gccs_module.CPU_BACKEND = name
        zz = z.clone().requires_grad_(True)
        out = GCCS(K).loss(zz, y)
        out.loss.backward()
        grads[name] = (out.parts["loss"].item(), zz.grad)
    assert grads["numpy"][0] == pytest.approx(grads["torch"][0], rel=1e-5)
    assert torch.allclose(grads["numpy"][1], grads["torch"][1], rtol=1e-4, atol=1e-6)


class _Branching(gccs_module._TorchOps):
    """The tensor path as it was: it asks the host how many classes are full, and factorises by LU
    only when a Cholesky failed (two host syncs a step on a GPU)."""

    branch_free = False

    @staticmethod
    def logdet_inverse(cov):
        return gccs_module._TorchOps.logdet_inverse(cov, branch_free=False)


@pytest.mark.parametrize("counts", [(40, 40, 40), (40, 3, 40), (3, 4, 2), (40, 1, 0)])
def test_the_branch_free_tensor_path_equals_the_branching_one(counts):
    """All classes full, mixed, all diagonal, one absent: the same statistics without a host sync."""
    gen = torch.Generator().manual_seed(sum(counts))
    dim, k = 5, len(counts)
    y = torch.cat([torch.full((n,), i) for i, n in enumerate(counts)])
    z = torch.randn(len(y), dim, generator=gen, dtype=torch.float64) * 3 + 20 * torch.nn.functional.one_hot(y, dim)[:, :dim]
    onehot = torch.nn.functional.one_hot(y, k).double()
    targets = 20 * torch.eye(k, dim, dtype=torch.float64)
    free = gccs_module.class_statistics(z, onehot, y, targets, 1.0, "auto", gccs_module._TorchOps)
    branching = gccs_module.class_statistics(z, onehot, y, targets, 1.0, "auto", _Branching)
    for key in ("kl", "kurt", "m2", "m4"):
        assert torch.allclose(free[key], branching[key], rtol=1e-12, atol=1e-12), key
    for key in ("g_full", "g_diag"):
        if key in branching:
            assert torch.allclose(free[key], branching[key], rtol=1e-12, atol=1e-12), key


def test_the_lu_fallback_is_selected_where_cholesky_fails_without_asking_the_host():
    cov = torch.stack([torch.eye(3, dtype=torch.float64) * 2, -torch.eye(3, dtype=torch.float64)])  # 2nd not PD
    logdet, inverse = gccs_module._TorchOps.logdet_inverse(cov)
    ref_logdet, ref_inverse = torch.linalg.slogdet(cov)[1], torch.linalg.inv(cov)
    assert torch.allclose(logdet, ref_logdet) and torch.allclose(inverse, ref_inverse)
    branching_logdet, branching_inverse = gccs_module._TorchOps.logdet_inverse(cov, branch_free=False)
    assert torch.allclose(branching_logdet, logdet) and torch.allclose(branching_inverse, inverse)
