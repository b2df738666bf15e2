"""Gaussian class-conditional simplex (GCCS) loss.

Ali, Migliorati, Bianchi, Magli, "Gaussian class-conditional simplex loss for accurate,
adversarially robust deep classifier training", EURASIP J. on Information Security 2023
(../shared/papers/000_*.txt, spec: ../shared/spec/seed-gccs.md).
"""
from __future__ import annotations

import math

import numpy as np

import torch
from torch.nn import functional as F

from .base import LossOutput, Objective, Param, fp32

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

    def _inputs(self, z: torch.Tensor, y: torch.Tensor):
        z = fp32(z)
        onehot = F.one_hot(y, self.num_classes).to(z.dtype)
        return z, onehot, self.vertices.to(z.dtype)

    @torch.no_grad()
    def class_terms(self, z: torch.Tensor, y: torch.Tensor):
        """Per-class KL terms L_i (K,), kurtosis K_i (K,) and the mask of classes that count (n_i ≥ 2)."""
        z, onehot, targets = self._inputs(z, y)
        stats = class_statistics(z, onehot, y, targets, self.sigma_t ** 2, self.params["covariance"], _TorchOps)
        return stats["kl"], stats["kurt"], stats["active"]

    def loss(self, z: torch.Tensor, y: torch.Tensor) -> LossOutput:
        z = fp32(z)
        loss, total, kl_sum, kurt_sum = _GCCSLoss.apply(z, y, self.vertices.to(z.dtype), self.sigma_t ** 2,
                                                        self.params["covariance"], self.lam,
                                                        self.params["kurtosis"] == "abs")
        return LossOutput(loss, {"loss": total, "kl": kl_sum, "kurtosis": kurt_sum})

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


class _TorchOps:
    """The few operations whose spelling differs between torch and numpy; the rest of the GCCS
    formulas (+, −, ×, /, @, indexing, .sum, .T, [:, None]) read the same for both.

    On tensors (a GPU's path) nothing asks the host for a value: a branch that depends on the data
    is computed both ways and selected by ``where`` (``branch_free``), so a step never waits for
    the device to finish."""

    branch_free = True

    cat = staticmethod(lambda xs: torch.cat(xs, 1))
    clamp_min = staticmethod(torch.clamp_min)
    log, sign, where = torch.log, torch.sign, torch.where
    diag = staticmethod(lambda x: torch.diagonal(x, dim1=1, dim2=2))

    @staticmethod
    def eye(dim, like):
        return torch.eye(dim, device=like.device, dtype=like.dtype)

    @staticmethod
    def as_float(mask, like):
        return mask.to(like.dtype)

    @staticmethod
    def logdet_inverse(cov, branch_free: bool = True):
        """log|Σ| and Σ⁻¹ by Cholesky, by LU where Σ is not positive definite despite the ridge.
        ``branch_free``: both computed, the LU kept where Cholesky failed (no host sync); else the
        LU only when a factorisation failed (one host sync)."""
        chol, info = torch.linalg.cholesky_ex(cov)
        by_chol = 2 * torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum(1), torch.cholesky_inverse(chol)
        if branch_free:
            failed = info > 0
            logdet = torch.where(failed, torch.linalg.slogdet(cov)[1], by_chol[0])
            return logdet, torch.where(failed[:, None, None], torch.linalg.inv_ex(cov)[0], by_chol[1])
        if bool(info.any()):
            return torch.linalg.slogdet(cov)[1], torch.linalg.inv(cov)
        return by_chol


class _NumpyOps:
    branch_free = False  # on the CPU a branch costs nothing, and skipping half the work does
    cat = staticmethod(lambda xs: np.concatenate(xs, 1))
    clamp_min = staticmethod(np.maximum)
    log, sign, where = np.log, np.sign, np.where
    diag = staticmethod(lambda x: np.diagonal(x, axis1=1, axis2=2))

    @staticmethod
    def eye(dim, like):
        return np.eye(dim, dtype=like.dtype)

    @staticmethod
    def as_float(mask, like):
        return mask.astype(like.dtype)

    @staticmethod
    def logdet_inverse(cov):
        # torch's batched Cholesky on the same memory (no copy): a third cheaper than np.linalg's
        # cholesky + inv, whose per-call checks cost more than the 10×10 factorisations themselves
        logdet, inverse = _TorchOps.logdet_inverse(torch.from_numpy(np.ascontiguousarray(cov)), branch_free=False)
        return logdet.numpy(), inverse.numpy()


# On the CPU the statistics of a (200 × 10) batch cost ~45 tiny operations, and torch's per-operation
# dispatch (~6 µs here) made the loss 5× as expensive as cross-entropy; numpy's (~1 µs) does not.
# On a GPU the tensors stay where they are. Tests run both backends.
CPU_BACKEND = "numpy"


def class_statistics(z, onehot, y, targets, var_t: float, mode: str, xp=_TorchOps) -> dict:
    """Per-class statistics of a batch, the KL terms and kurtoses, and what the gradient needs.

    For class i with n samples and centred rows c_b = z_b − μ_i:
        Σ = Σ_b c_b c_bᵀ / (n − 1) + ridge·I   (full)   or   diag(max(Σ_b c_b² / (n − 1), floor))
        kl_i = D log σ_T² − log|Σ| − D + (tr Σ + ‖t_i − μ_i‖²) / σ_T²
        kurt_i = mean_j m4_j / m2_j²,  m_p = Σ_b c_b^p / n  (m2 floored)
    All per-class sums are one (K×B) matrix product: on small batches the cost is the number of
    operations, not the arithmetic, so the homogeneous cases (every class full, or every class
    diagonal) skip the other branch entirely. ``xp``: _TorchOps (tensors) or _NumpyOps (arrays).
    """
    batch, dim = z.shape
    k = onehot.shape[1]
    counts = onehot.sum(0)[:, None]  # (K, 1)
    n = xp.clamp_min(counts, 1.0)
    unbiased = xp.clamp_min(counts - 1, 1.0)
    means = (onehot.T @ z) / n
    c = z - means[y]  # exact centring: no E[zzᵀ] − μμᵀ cancellation at |z| ≈ 70
    sq = c * c
    if mode == "auto":
        use_full = counts[:, 0] > dim
        # how many classes are full decides which branches run; branch-free: both, always
        n_full = None if xp.branch_free else int(use_full.sum())
    else:
        n_full = k if mode == "full" else 0
        use_full = (counts[:, 0] > -1) if mode == "full" else (counts[:, 0] < -1)
    any_full, any_diagonal = n_full is None or n_full > 0, n_full is None or n_full < k
    if any_full:  # per-sample outer products; their diagonals are the squares
        sums = onehot.T @ xp.cat([(c[:, :, None] * c[:, None, :]).reshape(batch, dim * dim), sq * sq])
        scatter = sums[:, :dim * dim].reshape(k, dim, dim)
        sum_sq = xp.diag(scatter)
    else:
        sums = onehot.T @ xp.cat([sq, sq * sq])
        sum_sq = sums[:, :dim]
    offset = targets - means
    out = {"c": c, "n": n, "unbiased": unbiased, "active": counts[:, 0] >= 2, "offset": offset}

    if any_diagonal:  # diagonal classes
        raw_var = sum_sq / unbiased
        var = xp.clamp_min(raw_var, VARIANCE_FLOOR)
        logdet, trace = xp.log(var).sum(1), var.sum(1)
        # ∂kl/∂Σ on the diagonal: zero where the variance sits on its floor (and for full classes)
        live = raw_var > VARIANCE_FLOOR
        if any_full:
            live = live & ~use_full[:, None]
        out["g_diag"] = xp.where(live, 1.0 / var_t - 1.0 / var, 0.0)
    if any_full:  # full classes
        eye = xp.eye(dim, z)
        cov = scatter / unbiased[:, :, None] + eye * (RIDGE * var_t)
        if any_diagonal:
            cov = xp.where(use_full[:, None, None], cov, eye)  # diagonal classes: never factorised
        logdet_full, inverse = xp.logdet_inverse(cov)
        trace_full = xp.diag(cov).sum(1)
        g_full = eye / var_t - inverse  # ∂kl/∂Σ
        if any_diagonal:
            logdet, trace = xp.where(use_full, logdet_full, logdet), xp.where(use_full, trace_full, trace)
            g_full = xp.where(use_full[:, None, None], g_full, 0.0)
        else:
            logdet, trace = logdet_full, trace_full
        out["g_full"] = g_full
    out["kl"] = (trace + (offset * offset).sum(1)) / var_t - logdet + dim * (math.log(var_t) - 1)
    m2_raw = sum_sq / n
    out["m2"] = m2 = xp.clamp_min(m2_raw, VARIANCE_FLOOR)
    out["m2_live"] = m2_raw > VARIANCE_FLOOR
    out["m4"] = m4 = sums[:, -dim:] / n
    out["kurt"] = (m4 / (m2 * m2)).mean(1)
    return out


def gccs_sums_and_gradient_table(st: dict, var_t: float, lam: float, absolute: bool, xp) -> tuple:
    """The two sums and the per-class factors of their gradient (which do not depend on the
    incoming scalar gradients, so backward only gathers them once)."""
    dim = st["c"].shape[1]
    active = xp.as_float(st["active"], st["c"])[:, None]  # (K, 1)
    excess = st["kurt"][:, None] - 3.0
    kurt_weight = (lam * active) * (xp.sign(excess) if absolute else 1.0)
    kl_sum = (st["kl"][:, None] * active).sum()
    kurt_sum = (kurt_weight * excess).sum()
    n, m2, m4 = st["n"], st["m2"], st["m4"]
    per_kurt = kurt_weight * (4.0 / dim) / (n * m2 * m2)  # (K, D)
    cov_scale = active * 2.0 / st["unbiased"]
    columns = [(active * (-2.0 / var_t) / n) * st["offset"], per_kurt,
               per_kurt * xp.where(st["m2_live"], m4 / m2, 0.0)]
    if "g_diag" in st:
        columns.append(cov_scale * st["g_diag"])
    g_full = cov_scale[:, :, None] * st["g_full"] if "g_full" in st else None
    return kl_sum, kurt_sum, xp.cat(columns), g_full


def arange_like(like, n):
    return np.arange(n) if isinstance(like, np.ndarray) else torch.arange(n, device=like.device)


def gccs_gradient(table, g_full, onehot, y, c, n, has_diag: bool, grad_kl_sum, grad_kurt_sum):
    """∂(grad_kl·Σ L_i + grad_kurt·Σ λ|K_i − 3|)/∂z from the stored per-class factors."""
    dim = c.shape[1]
    rows = table[y]  # one gather for every per-class factor
    g_c = c * (rows[:, dim:2 * dim] * c * c - rows[:, 2 * dim:3 * dim]) * grad_kurt_sum
    kl_part = rows[:, :dim]
    if has_diag:
        kl_part = kl_part + rows[:, 3 * dim:] * c
    if g_full is not None:  # G_{y_b} c_b for every b as one (B×D)·(D×KD) product, then each row's block
        batch, k = c.shape[0], g_full.shape[0]
        every_class = (c @ g_full.transpose(1, 0, 2).reshape(dim, k * dim) if isinstance(c, np.ndarray) else
                       c @ g_full.permute(1, 0, 2).reshape(dim, k * dim))  # G is symmetric: c G = (G c)ᵀ
        kl_part = kl_part + every_class.reshape(batch, k, dim)[arange_like(c, batch), y]
    # the class mean moves with every sample: centre the kurtosis gradient over each class
    return kl_part * grad_kl_sum + g_c - ((onehot.T @ g_c) / n)[y]


class _GCCSLoss(torch.autograd.Function):
    """The optimiser's loss (Σ_i L_i + Σ_i λ·|K_i − 3|) / B over the classes with n_i ≥ 2, with an
    analytic gradient; also returns the undivided total and its two parts (not differentiable).

    A hand-written backward replaces ~120 tiny autograd ops by ~15, and folding the sum and the
    division by B in here saves the autograd nodes they would cost (tests check the gradient against
    finite differences and against autograd through torch.distributions). With
    G = ∂kl/∂Σ = I/σ_T² − Σ⁻¹ (zero where a diagonal variance sits on its floor):
        ∂L_i/∂z_b = 2 G c_b / (n − 1) − 2 (t_i − μ_i) / (σ_T² n)    (Σ_b G c_b = 0: no centring term)
        ∂K_i/∂c_bj = (4 c³ / m2² − 4 m4 c / m2³) / (n D), then centred over the class (μ depends on z).
    """

    @staticmethod
    def forward(ctx, z, y, targets, var_t, mode, lam, absolute):
        on_numpy = z.device.type == "cpu" and CPU_BACKEND == "numpy"
        xp = _NumpyOps if on_numpy else _TorchOps
        dtype, batch, k = z.dtype, z.shape[0], targets.shape[0]
        if on_numpy:
            z, y, targets = z.detach().numpy(), y.numpy(), targets.numpy()
            onehot = np.eye(k, dtype=z.dtype)[y]
        else:
            onehot = F.one_hot(y, k).to(dtype)
        # Overflow shows up as a non-finite loss, which the training loop reports; numpy need not warn.
        with np.errstate(all="ignore"):
            st = class_statistics(z, onehot, y, targets, var_t, mode, xp)
            kl_sum, kurt_sum, table, g_full = gccs_sums_and_gradient_table(st, var_t, lam, absolute, xp)
        ctx.saved = (table, g_full, onehot, y, st["c"], st["n"], "g_diag" in st)
        ctx.on_numpy, ctx.batch = on_numpy, batch
        if on_numpy:  # the four scalars as one tensor: one conversion, no torch arithmetic
            total = float(kl_sum) + float(kurt_sum)
            loss, total, kl_sum, kurt_sum = torch.tensor([total / batch, total, float(kl_sum), float(kurt_sum)],
                                                         dtype=dtype).unbind()
        else:
            total = kl_sum + kurt_sum
            loss = total / batch
        ctx.mark_non_differentiable(total, kl_sum, kurt_sum)
        return loss, total, kl_sum, kurt_sum

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss, *_):
        if ctx.on_numpy:
            scale = float(grad_loss) / ctx.batch
            with np.errstate(all="ignore"):
                grad = torch.from_numpy(np.ascontiguousarray(gccs_gradient(*ctx.saved, scale, scale)))
        else:
            scale = grad_loss / ctx.batch
            grad = gccs_gradient(*ctx.saved, scale, scale)
        return grad, None, None, None, None, None, None
