"""Gaussian class-conditional simplex (GCCS) loss.

Ali, Migliorati, Bianchi, Magli, "Gaussian class-conditional simplex loss for accurate,
adversarially robust deep classifier training", EURASIP J. on Information Security 2023
(../shared/papers/000_*.txt, spec: ../shared/spec/seed-gccs.md).
"""
from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from .base import LossOutput, Objective, Param

RIDGE = 1e-4  # times σ_T²: keeps a full covariance estimate positive definite (spec §3, decision 2)
VARIANCE_FLOOR = 1e-6


class GCCS(Objective):
    """Pulls the per-class batch statistics of z to N(μ_T·e_i, σ_T²·I), the vertices of a simplex.

    For every class i with n_i ≥ 2 samples in the batch (Eqs. 1–2 of the paper):

        L_i = log(|Σ_T| / |Σ_Oi|) − D + tr(Σ_T⁻¹ Σ_Oi) + (μ_T e_i − μ_Oi)ᵀ Σ_T⁻¹ (μ_T e_i − μ_Oi)
        L_GCCS = Σ_i [ L_i + λ·|K_i − 3| ]     (kurtosis="abs"; "literal": λ·(K_i − 3))

    where μ_Oi, Σ_Oi are the class's sample mean and (unbiased) covariance and K_i the mean over
    components of the class's kurtosis m4/m2² (biased moments, so a Gaussian gives 3).

    Arguments:
        num_classes (int): K; the latent dimension D equals K.
        mu_t (float): μ_T, the distance of each vertex from the origin. Default: 70.
        sigma_t (float): σ_T, the target standard deviation. Default: 1.
        lam (float): λ, weight of the kurtosis term. Default: 0.2.
        kurtosis (str): "abs" penalises |K_i − 3| (default); "literal" is the paper's λ(K_i − 3).
        covariance (str): "auto" (full + ridge when n_i > D, else diagonal), "full" or "diag".

    Shape:
        z: (B, K); y: (B,). Prediction argmax z (= nearest vertex). The value reported in
        ``parts`` is the paper's sum over classes; the optimiser gets it divided by B so that
        learning rates stay comparable with cross-entropy (spec §3, decision 4).
    """

    name = "gccs"
    title = "GCCS"
    citation = "Ali et al., EURASIP JIS 2023 (Gaussian class-conditional simplex)"
    PART_NAMES = ("loss", "kl", "kurtosis")
    PARAMS = (
        Param("mu_t", 70.0, "μ_T: distance of each simplex vertex from the origin (GCCS §4.2: 70 is best)",
              minimum=0.0, exclusive_minimum=True),
        Param("sigma_t", 1.0, "σ_T: standard deviation of each target Gaussian (GCCS §4.2: 1)",
              minimum=0.0, exclusive_minimum=True),
        Param("lam", 0.2, "λ: weight of the kurtosis term (GCCS Table 1: 0.2 is best)", minimum=0.0),
        Param("kurtosis", "abs", "abs: λ|K−3| (target 3, our default); literal: the paper's λ(K−3) as printed",
              choices=("abs", "literal")),
        Param("covariance", "auto", "auto: full + ridge when a class has more than K samples in the batch, "
              "else diagonal; full; diag (GCCS is silent, spec §3)", choices=("auto", "full", "diag")),
    )

    def __init__(self, num_classes: int, **params):
        super().__init__(num_classes, **params)
        self.mu_t = float(self.params["mu_t"])
        self.sigma_t = float(self.params["sigma_t"])
        self.lam = float(self.params["lam"])
        self.register_buffer("vertices", self.mu_t * torch.eye(num_classes))

    @classmethod
    def param_warnings(cls, num_classes, params):
        p = cls.validate_params(params)
        bound = math.sqrt(2 * num_classes)
        if p["mu_t"] / p["sigma_t"] <= bound:
            return [f"gccs.mu_t / gccs.sigma_t = {p['mu_t'] / p['sigma_t']:.3g} is not above √(2K) = {bound:.3g}: "
                    "the class Gaussians overlap (GCCS §3.1 separability condition)"]
        return []

    def class_terms(self, z: torch.Tensor, y: torch.Tensor):
        """Per-class KL terms L_i, kurtosis K_i and the mask of classes that count (n_i ≥ 2)."""
        if z.dtype in (torch.float16, torch.bfloat16):
            z = z.float()  # statistics and log-determinants stay in fp32 even under autocast
        batch, dim = z.shape
        k = self.num_classes
        onehot = F.one_hot(y, k).to(z.dtype)  # (B, K)
        counts = onehot.sum(0)  # (K,)
        active = counts >= 2
        means = (onehot.T @ z) / counts.clamp(min=1).unsqueeze(1)  # (K, D)
        centred = z - means[y]  # (B, D): exact centring, no E[zzᵀ] − μμᵀ cancellation at |z| ≈ 70
        unbiased = (counts - 1).clamp(min=1)
        var_t = self.sigma_t ** 2
        eye = torch.eye(dim, device=z.device, dtype=z.dtype)

        # Diagonal variances (used in diag mode and for the kurtosis).
        sq = centred * centred
        sum_sq = onehot.T @ sq  # (K, D): per-class sums of squared deviations
        var_diag = (sum_sq / unbiased.unsqueeze(1)).clamp(min=VARIANCE_FLOOR)
        mode = self.params["covariance"]
        if mode == "auto":
            use_full = counts > dim
        else:
            use_full = torch.full_like(active, mode == "full")
        logdet = torch.log(var_diag).sum(1)
        trace = var_diag.sum(1)
        if bool(use_full.any()):
            # Per-sample outer products summed per class as one (K×B)·(B×D²) product: far cheaper
            # (forward and backward) than a three-way einsum that materialises B×K×D.
            outer = (centred.unsqueeze(2) * centred.unsqueeze(1)).reshape(batch, dim * dim)
            cov = (onehot.T @ outer).view(k, dim, dim) / unbiased.view(k, 1, 1)
            cov = cov + (RIDGE * var_t) * eye
            # Classes in diagonal mode get the identity here, so the batched log-det never sees a
            # singular matrix (a NaN in the unused branch would still poison the gradient).
            cov = torch.where(use_full.view(k, 1, 1), cov, eye)
            logdet = torch.where(use_full, torch.linalg.slogdet(cov)[1], logdet)
            trace = torch.where(use_full, torch.diagonal(cov, dim1=1, dim2=2).sum(1), trace)

        targets = self.vertices.to(z.dtype)
        mahalanobis = ((targets - means) ** 2).sum(1) / var_t
        kl = dim * math.log(var_t) - logdet - dim + trace / var_t + mahalanobis  # (K,)

        m2 = (sum_sq / counts.clamp(min=1).unsqueeze(1)).clamp(min=VARIANCE_FLOOR)
        m4 = (onehot.T @ (sq * sq)) / counts.clamp(min=1).unsqueeze(1)
        kurt = (m4 / (m2 * m2)).mean(1)  # (K,)
        return kl, kurt, active

    def loss(self, z: torch.Tensor, y: torch.Tensor) -> LossOutput:
        kl, kurt, active = self.class_terms(z, y)
        excess = kurt - 3.0
        kurt_term = self.lam * (excess.abs() if self.params["kurtosis"] == "abs" else excess)
        zero = torch.zeros((), device=z.device, dtype=kl.dtype)
        kl_sum = torch.where(active, kl, zero).sum()
        kurt_sum = torch.where(active, kurt_term, zero).sum()
        total = kl_sum + kurt_sum
        parts = {"loss": total.detach(), "kl": kl_sum.detach(), "kurtosis": kurt_sum.detach()}
        return LossOutput(total / z.shape[0], parts)

    def adaptive_objective(self, z, y, target=None):
        # An attacker who knows the geometry pushes z away from its own vertex (or onto the target's).
        if target is None:
            return ((z - self.vertices[y]) ** 2).sum(1)
        return -((z - self.vertices[target]) ** 2).sum(1)

    def geometry(self):
        return self.vertices

    def diagnostics(self, z, y):
        return {"mean_norm_z": float(z.norm(dim=1).mean()),
                "mean_dist_own_vertex": float((z - self.vertices[y]).norm(dim=1).mean())}
