"""Metrics against brute-force and library computations."""
import itertools

import numpy as np
import pytest
import scipy.stats
import torch
from sklearn.metrics import f1_score

from engine.metrics import class_kurtosis, macro_f1, r_ab
from engine.latent import coords_3d, simplex_view


def brute_r_ab(z: np.ndarray, y: np.ndarray) -> tuple[float, list[float]]:
    """GCCS Eq. 6 with explicit pairwise distances over all n×n and n×m pairs."""
    values = []
    for a, b in itertools.permutations(np.unique(y), 2):
        za, zb = z[y == a], z[y == b]
        intra = np.mean([np.sum((p - q) ** 2) for p in za for q in za])
        inter = np.mean([np.sum((p - q) ** 2) for p in za for q in zb])
        values.append(np.sqrt(inter / intra))
    return float(np.mean(values)), values


def test_r_ab_equals_the_pairwise_definition():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 80)
    z = rng.normal(size=(80, 5)) + 3 * np.eye(5)[y]
    mean, ci = r_ab(torch.tensor(z), torch.tensor(y), 4)
    expected, values = brute_r_ab(z, y)
    assert mean == pytest.approx(expected, rel=1e-10)
    assert ci == pytest.approx(1.96 * np.std(values, ddof=1) / np.sqrt(len(values)), rel=1e-9)


def test_r_ab_grows_as_classes_separate():
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(3), 50)
    noise = rng.normal(size=(150, 3))
    near = r_ab(torch.tensor(noise + 1 * np.eye(3)[y]), torch.tensor(y), 3)[0]
    far = r_ab(torch.tensor(noise + 20 * np.eye(3)[y]), torch.tensor(y), 3)[0]
    assert far > 5 * near


def test_macro_f1_matches_sklearn():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 6, 300)
    pred = np.where(rng.random(300) < 0.7, y, rng.integers(0, 6, 300))
    pred[pred == 5] = 4  # class 5 never predicted
    ours = macro_f1(torch.tensor(pred), torch.tensor(y), 6)
    assert ours == pytest.approx(f1_score(y, pred, average="macro"), rel=1e-12)


def test_class_kurtosis_matches_scipy_and_is_nan_below_two_samples():
    rng = np.random.default_rng(3)
    y = np.array([0] * 100 + [1] * 60 + [2])
    z = rng.standard_t(5, size=(161, 4))
    kurt = class_kurtosis(torch.tensor(z), torch.tensor(y), 4)
    for c in (0, 1):
        assert kurt[c] == pytest.approx(np.mean(scipy.stats.kurtosis(z[y == c], axis=0, fisher=False)), rel=1e-10)
    assert np.isnan(kurt[2]) and np.isnan(kurt[3])


def test_simplex_view_keeps_distances_within_the_plane_and_3d_picks_coordinates():
    geometry = 10 * np.eye(5)
    rng = np.random.default_rng(4)
    y = rng.integers(0, 5, 100)
    z = geometry[y] + rng.normal(size=(100, 5))
    points, labels, vertices = simplex_view(z, y, [0, 1, 4], geometry)
    assert set(labels) <= {0, 1, 4} and len(points) == np.isin(y, [0, 1, 4]).sum()
    # the projected vertices form the same equilateral triangle (side μ_T·√2)
    sides = [np.linalg.norm(vertices[i] - vertices[j]) for i, j in ((0, 1), (1, 2), (0, 2))]
    assert sides == pytest.approx([10 * np.sqrt(2)] * 3)
    # a point on a vertex projects onto that vertex
    p, _, v = simplex_view(geometry[[4]], np.array([4]), [0, 1, 4], geometry)
    assert p[0] == pytest.approx(v[2])
    xyz, lab3, centres, names = coords_3d(z, y, [0, 1, 4], geometry)
    assert np.allclose(xyz, z[np.isin(y, [0, 1, 4])][:, [0, 1, 4]]) and np.allclose(centres, 10 * np.eye(3))
    assert names == ["z_0", "z_1", "z_4"]
    # without a geometry the class means are the centres
    _, _, means, _ = coords_3d(z, y, [0, 1, 4], None)
    assert np.allclose(means[0], z[y == 0][:, [0, 1, 4]].mean(0))


def test_3d_view_of_a_wider_latent_uses_the_subspace_of_the_three_centres():
    rng = np.random.default_rng(5)
    geometry = rng.normal(size=(5, 16))  # 5 classes, latent dimension 16
    y = rng.integers(0, 5, 200)
    z = geometry[y] + 0.1 * rng.normal(size=(200, 16))
    xyz, labels, centres, names = coords_3d(z, y, [0, 2, 3], geometry)
    assert xyz.shape == (np.isin(y, [0, 2, 3]).sum(), 3) and names[0] == "centre axis 1"
    # distances between the three centres are kept exactly (they lie in the subspace)
    for i, j in ((0, 1), (1, 2), (0, 2)):
        assert np.linalg.norm(centres[i] - centres[j]) == pytest.approx(
            np.linalg.norm(geometry[[0, 2, 3]][i] - geometry[[0, 2, 3]][j]))
    # a point on a centre lands on that centre's coordinates
    p, _, c, _ = coords_3d(geometry[[2]], np.array([2]), [0, 2, 3], geometry)
    assert p[0] == pytest.approx(c[1])
