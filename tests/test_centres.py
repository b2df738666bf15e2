"""Max-Mahalanobis centres: the properties Algorithm 1 guarantees, for several (K, d)."""
import math

import pytest
import torch

from engine.objectives import ConfigError
from engine.objectives.centres import max_mahalanobis_centres


@pytest.mark.parametrize("k, d", [(2, 1), (3, 2), (4, 3), (10, 9), (10, 10), (10, 256), (100, 128)])
@pytest.mark.parametrize("norm", [1.0, 10.0])
def test_simplex_centres_have_equal_norms_equal_angles_and_sum_zero(k, d, norm):
    mu = max_mahalanobis_centres(k, d, norm).double()
    assert mu.shape == (k, d)
    assert torch.allclose(mu.norm(dim=1), torch.full((k,), norm, dtype=torch.float64), rtol=1e-5)
    gram = mu @ mu.T
    off = gram[~torch.eye(k, dtype=torch.bool)]
    assert torch.allclose(off, torch.full_like(off, -norm**2 / (k - 1)), atol=1e-4 * norm**2)
    assert torch.allclose(mu.sum(0), torch.zeros(d, dtype=torch.float64), atol=1e-4 * norm)


def test_worked_values_of_the_spec():
    mu = max_mahalanobis_centres(10, 10, 10.0).double()
    assert float(mu[0] @ mu[1]) == pytest.approx(-11.11, abs=0.01)
    assert float((mu[0] - mu[1]).norm()) == pytest.approx(14.907, abs=0.001)


def test_two_dimensions_put_the_centres_on_a_circle():
    mu = max_mahalanobis_centres(10, 2, 10.0).double()
    assert torch.allclose(mu.norm(dim=1), torch.full((10,), 10.0, dtype=torch.float64))
    angles = torch.atan2(mu[:, 1], mu[:, 0])
    gaps = torch.diff(torch.sort(angles).values)
    assert torch.allclose(gaps, torch.full_like(gaps, 2 * math.pi / 10), atol=1e-6)


def test_numerical_solution_below_k_minus_one_spreads_the_centres():
    mu = max_mahalanobis_centres(10, 3, 1.0, steps=2000).double()
    gram = mu @ mu.T
    worst = gram[~torch.eye(10, dtype=torch.bool)].max()
    assert torch.allclose(mu.norm(dim=1), torch.ones(10, dtype=torch.float64), atol=1e-6)
    # 10 points on the sphere S²: the best possible minimal angle is 66.15° (Tammes), cos = 0.404
    assert worst < 0.42
    assert torch.equal(mu.float(), max_mahalanobis_centres(10, 3, 1.0, steps=2000))  # deterministic


@pytest.mark.parametrize("args", [(1, 5, 1.0), (3, 0, 1.0), (3, 2, 0.0)])
def test_bad_arguments_are_config_errors(args):
    with pytest.raises(ConfigError):
        max_mahalanobis_centres(*args)
