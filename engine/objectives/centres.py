"""Fixed class centres shared by MMC and MAT: the Max-Mahalanobis centres.

Pang et al., "Rethinking softmax cross-entropy loss for adversarial robustness" (ICLR 2020),
App. B.1, Algorithm 1 "GenerateMMcenters" (spec: ../shared/spec/seed-mmc.md §1.6), with this paper's
convention that C_MM is the norm of each centre (not its square).
"""
from __future__ import annotations

import math

import torch

from .base import ConfigError


def max_mahalanobis_centres(num_classes: int, dim: int, norm: float, steps: int = 10_000) -> torch.Tensor:
    """K centres in R^d, each of norm ``norm``, with the largest possible minimal pairwise angle.

    d ≥ K − 1: Algorithm 1 (vertices of a regular simplex centred at the origin; ⟨μ_i, μ_j⟩ =
    −C²/(K−1) for i ≠ j, Σ μ_i = 0). d = 2 < K − 1: K points evenly spaced on a circle (the known
    optimum). Otherwise: the numerical max-min-angle solution of the authors' code (unit columns,
    Adam on max_{i≠j} ⟨μ_i, μ_j⟩, lr 1e-4 → here 1e-2 with a fixed seed, 10,000 steps), scaled by C.
    Returns a float32 tensor (K, d), deterministic for given arguments.
    """
    k, d = int(num_classes), int(dim)
    if k < 2:
        raise ConfigError(f"num_classes must be ≥ 2 for Max-Mahalanobis centres; got {num_classes}")
    if d < 1:
        raise ConfigError(f"the latent dimension d must be ≥ 1; got {dim}")
    if not norm > 0:
        raise ConfigError(f"the centre norm must be > 0; got {norm}")
    if d >= k - 1:
        mu = torch.zeros(k, max(d, k), dtype=torch.float64)  # Algorithm 1 indexes coordinate i < K
        mu[0, 0] = 1.0
        for i in range(1, k):
            for j in range(i):
                mu[i, j] = -(1 + (mu[i] @ mu[j]) * (k - 1)) / (mu[j, j] * (k - 1))
            mu[i, i] = math.sqrt(max(0.0, 1.0 - float(mu[i] @ mu[i])))  # 0 (round-off) when K = d + 1
        return (norm * mu[:, :d]).float()
    if d == 2:
        angles = 2 * math.pi * torch.arange(k, dtype=torch.float64) / k
        return (norm * torch.stack([torch.cos(angles), torch.sin(angles)], 1)).float()
    generator = torch.Generator().manual_seed(0)
    free = torch.randn(d, k, generator=generator, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.Adam([free], lr=1e-2)
    eye = torch.eye(k, dtype=torch.float64)
    for _ in range(steps):
        unit = free / free.norm(dim=0, keepdim=True)
        worst = (unit.T @ unit - 2 * eye).max()  # the largest off-diagonal inner product
        optimiser.zero_grad()
        worst.backward()
        optimiser.step()
    with torch.no_grad():
        unit = free / free.norm(dim=0, keepdim=True)
    return (norm * unit.T).float()
