"""Metrics computed on latents and predictions (GCCS spec §7): r_AB, macro F-score, kurtosis.

Everything works on tensors and stays on their device.
"""
from __future__ import annotations

import math

import torch


def class_moments(z: torch.Tensor, y: torch.Tensor, num_classes: int):
    """Per-class counts, means (K, D) and mean squared distance to the class mean (K,)."""
    z = z.double()
    onehot = torch.nn.functional.one_hot(y, num_classes).to(z.dtype)
    counts = onehot.sum(0)
    means = (onehot.T @ z) / counts.clamp(min=1).unsqueeze(1)
    spread = (onehot.T @ ((z - means[y]) ** 2).sum(1, keepdim=True)).squeeze(1) / counts.clamp(min=1)
    return counts, means, spread


def r_ab(z: torch.Tensor, y: torch.Tensor, num_classes: int) -> tuple[float, float]:
    """Inter/intra class distance ratio r_AB (GCCS Eq. 6), mean over ordered class pairs ± 95 % CI.

    r_AB = sqrt(mean_{i∈A, j∈B} ‖z_i − z_j‖² / mean_{i, j∈A} ‖z_i − z_j‖²), with the means over all
    n×m and n×n pairs (spec §7). In closed form, with v_A the mean squared distance to the class
    mean: intra = 2·v_A and inter = ‖μ_A − μ_B‖² + v_A + v_B, so no pairwise matrix is built.
    """
    counts, means, spread = class_moments(z, y, num_classes)
    present = torch.nonzero(counts > 0).flatten()
    if len(present) < 2:
        return float("nan"), float("nan")
    m, v = means[present], spread[present]
    inter = torch.cdist(m, m) ** 2 + v.unsqueeze(1) + v.unsqueeze(0)  # row A, column B
    intra = (2 * v).clamp(min=1e-12).unsqueeze(1)
    ratios = torch.sqrt(inter / intra)
    off = ~torch.eye(len(present), dtype=torch.bool, device=ratios.device)
    values = ratios[off]
    mean = float(values.mean())
    ci = 1.96 * float(values.std()) / math.sqrt(values.numel()) if values.numel() > 1 else 0.0
    return mean, ci


def confusion_matrix(pred: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    return torch.bincount(y * num_classes + pred, minlength=num_classes**2).view(num_classes, num_classes)


def macro_f1(pred: torch.Tensor, y: torch.Tensor, num_classes: int) -> float:
    """Macro-averaged F-score from the confusion matrix (classes absent from both count as 0)."""
    cm = confusion_matrix(pred, y, num_classes).double()
    tp = cm.diagonal()
    denominator = cm.sum(0) + cm.sum(1)
    f1 = torch.where(denominator > 0, 2 * tp / denominator.clamp(min=1), torch.zeros_like(tp))
    present = (cm.sum(1) > 0) | (cm.sum(0) > 0)
    return float(f1[present].mean())


def class_kurtosis(z: torch.Tensor, y: torch.Tensor, num_classes: int) -> list[float]:
    """Per-class kurtosis m4/m2² averaged over latent components (3 for a Gaussian); NaN if n < 2."""
    z = z.double()
    counts, means, _ = class_moments(z, y, num_classes)
    onehot = torch.nn.functional.one_hot(y, num_classes).to(z.dtype)
    sq = (z - means[y]) ** 2
    m2 = (onehot.T @ sq) / counts.clamp(min=1).unsqueeze(1)
    m4 = (onehot.T @ sq**2) / counts.clamp(min=1).unsqueeze(1)
    kurt = (m4 / m2.clamp(min=1e-12) ** 2).mean(1)
    return [float(k) if n >= 2 else float("nan") for k, n in zip(kurt, counts)]
