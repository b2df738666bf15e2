"""Projections of latent vectors for the latent-space views (../shared/spec/visuals.md)."""
from __future__ import annotations

import numpy as np


def class_centres(z: np.ndarray, y: np.ndarray, classes: list[int], geometry: np.ndarray | None) -> np.ndarray:
    """The three centres a view is drawn around: the objective's fixed geometry if it has one
    (GCCS vertices), else the class means of the latents (CE)."""
    if geometry is not None:
        return np.asarray(geometry, dtype=np.float64)[classes]
    return np.stack([z[y == c].mean(0) if np.any(y == c) else np.zeros(z.shape[1]) for c in classes])


def plane_basis(centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Origin and orthonormal basis (2, D) of the plane through three centres (Gram–Schmidt)."""
    origin = centres.mean(0)
    u = centres[1] - centres[0]
    u = u / max(np.linalg.norm(u), 1e-12)
    w = centres[2] - centres[0]
    w = w - (w @ u) * u
    w = w / max(np.linalg.norm(w), 1e-12)
    return origin, np.stack([u, w])


def simplex_view(z: np.ndarray, y: np.ndarray, classes: list[int], geometry: np.ndarray | None):
    """Points of the three classes and their centres projected onto the plane through the centres.

    Returns (points (n, 2), labels (n,), vertices (3, 2)).
    """
    z = np.asarray(z, dtype=np.float64)
    mask = np.isin(y, classes)
    centres = class_centres(z, y, classes, geometry)
    origin, basis = plane_basis(centres)
    return (z[mask] - origin) @ basis.T, y[mask], (centres - origin) @ basis.T


def coords_3d(z: np.ndarray, y: np.ndarray, classes: list[int], geometry: np.ndarray | None):
    """Three coordinates of the three classes' points, and their centres in the same coordinates.

    Latents with one dimension per class (GCCS, CE, I-SCE, PCL logits): the coordinates
    (z_a, z_b, z_c), with the GCCS vertices μ_T·e_a … or the class means. Latents of another
    dimension (MMC, MAT, centre loss): the 3-D subspace spanned by the three centres (orthonormal
    basis by QR), which contains the simplex of those three centres undistorted.
    Returns (points (n, 3), labels (n,), centres (3, 3), axis names).
    """
    z = np.asarray(z, dtype=np.float64)
    mask = np.isin(y, classes)
    centres = class_centres(z, y, classes, geometry)
    num_classes = len(geometry) if geometry is not None else int(y.max()) + 1
    if z.shape[1] == num_classes:
        return z[mask][:, classes], y[mask], centres[:, classes], [f"z_{c}" for c in classes]
    basis, _ = np.linalg.qr(centres.T)  # (D, 3): spans the three centres
    return z[mask] @ basis, y[mask], centres @ basis, ["centre axis 1", "centre axis 2", "centre axis 3"]
