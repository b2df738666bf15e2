"""Manifold-Aware Training (MAT): cosine feature-to-centre loss with SO and BIBO regularisers.

Anonymous, "Manifold-Aware Training: Increase Adversarial Robustness with Feature Clustering",
ICLR 2021 submission, OpenReview mOO-LfEVZK (../shared/papers/003_*.txt, spec:
../shared/spec/seed-mat.md; defaults: ../shared/spec/objectives.md).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .base import ConfigError, LossOutput, Objective, Param, fp32
from .centres import max_mahalanobis_centres

NORM_FLOOR = 1e-6  # floor of ‖z‖² in the SO term's 1/‖z‖² (spec P2)
BIBO_START_STD = 0.001  # TRADES' random start x + 0.001·N(0, I) of the inner PGD (spec P3)
VARIANTS = ("ftc", "ftc+so", "ftc+bibo", "ftc+so+bibo")  # the SO/BIBO ablation of §1.9


class MAT(Objective):
    """Pulls the direction of z onto its class's fixed Max-Mahalanobis centre (Eqs. 4–9):

        L_FTC(x, y)  = 1 − cos(z, μ_y)                                   (Eq. 4, z = φ(x))
        L_SO(x, y)   = ‖∇_z L_FTC‖² = (1 − cos²(z, μ_y)) / ‖z‖²          (Eqs. 6–7, closed form)
        L_BIBO(x)    = max_{x' ∈ B_ε(x)} 1 − cos(φ(x), φ(x'))            (Eq. 8, inner ℓ∞ PGD)
        L_MAT        = L_FTC + α·L_SO + β·L_BIBO                          (Eq. 9)

    every term averaged over the batch. SO is the squared norm of the FTC gradient with respect to
    the *feature vector* z (not the input): the operations after z are fixed, so it is a function
    of z alone (spec §1.5, §7.4) and needs no double backprop. BIBO's maximisation is TRADES'
    PGD: random start x + 0.001·N(0, I), ``bibo_steps`` signed-gradient steps of ``bibo_step``,
    projected onto the ℓ∞ ball of radius ``bibo_eps`` and onto [0, 1], with the model in eval mode
    (BatchNorm statistics frozen, dropout off; spec P5); the outer term is then computed in train
    mode and back-propagates through both φ(x) and φ(x').

    The centres μ (K, d) are Max-Mahalanobis centres of norm C (a regular simplex, pairwise
    cos = −1/(K−1)); a buffer, never trained. All losses and the prediction are cosines, so C only
    scales the transformed logits h = z μᵀ that library attacks run on (§1.8, P6).

    Arguments:
        num_classes (int): K.
        d (int): latent dimension, ≥ K − 1. Default: 64 (spec §2.1 / §3.2, small nets).
        c (float): C, the norm of every centre. Default: 1.
        alpha (float): α, weight of SO. Default: 1.
        beta (float): β, weight of BIBO. Default: 6 (TRADES' 1/λ).
        variant (str): the terms trained with (§1.9): "ftc", "ftc+so", "ftc+bibo" or
            "ftc+so+bibo" (the full method; default).
        bibo_eps (float): ε of the inner ℓ∞ PGD in [0, 1] pixel units. Default: 0.3 (TRADES MNIST).
        bibo_step (float): step size of the inner PGD. Default: 0.01 (TRADES MNIST).
        bibo_steps (int): steps of the inner PGD. Default: 40 (TRADES MNIST). For CIFAR-like data
            TRADES uses ε 8/255 (0.031), step 0.007, 10 steps.

    Shape:
        z: (B, d) from a linear latent layer (no activation: centres have negative coordinates);
        y: (B,) int64; x: (B, C, H, W) in [0, 1]. Logits h: (B, K) = z μᵀ. Prediction: the centre
        of largest cosine (= argmax h, since every centre has norm C).

    ``loss(z, y)`` holds the terms that depend on z alone (FTC and SO); ``training_loss(model, x, y)``
    adds BIBO, which needs the model and the inputs.
    """

    name = "mat"
    title = "MAT"
    citation = "Manifold-Aware Training, ICLR 2021 submission (OpenReview mOO-LfEVZK)"
    PART_NAMES = ("loss", "ftc", "so", "bibo")
    PARAMS = (
        Param("d", 64, "d: latent dimension, ≥ K−1 (paper silent; spec §2.1: 64 for small nets, 256 for "
              "CIFAR-scale ones)", minimum=1),
        Param("c", 1.0, "C: norm of every Max-Mahalanobis centre; no effect on training, scales the logits "
              "h = zμᵀ that attacks use (paper silent; spec §3.2: 1)", minimum=0.0, exclusive_minimum=True),
        Param("alpha", 1.0, "α: weight of the SO term (Eq. 9; paper silent, spec §3.2: 1)", minimum=0.0),
        Param("beta", 6.0, "β: weight of the BIBO term (Eq. 9; paper silent, spec §3.2: 6 as TRADES' 1/λ)",
              minimum=0.0),
        Param("variant", "ftc+so+bibo", "terms trained with (§1.9 ablation: SO and BIBO on or off); "
              "ftc+so+bibo is MAT", choices=VARIANTS),
        Param("bibo_eps", 0.3, "ε of BIBO's inner ℓ∞ PGD, pixel units (TRADES: MNIST 0.3, CIFAR 8/255)",
              minimum=0.0, maximum=1.0),
        Param("bibo_step", 0.01, "step size of BIBO's inner PGD (TRADES: MNIST 0.01, CIFAR 0.007)",
              minimum=0.0, exclusive_minimum=True, maximum=1.0),
        Param("bibo_steps", 40, "steps of BIBO's inner PGD (TRADES: MNIST 40, CIFAR 10)", minimum=1),
    )

    def __init__(self, num_classes: int, **params):
        super().__init__(num_classes, **params)
        self.d = int(self.params["d"])
        if self.d < self.num_classes - 1:
            raise ConfigError(f"mat.d must be ≥ K − 1 = {self.num_classes - 1} for Max-Mahalanobis centres "
                              f"(a regular simplex); got {self.d}")
        self.c = float(self.params["c"])
        self.alpha = float(self.params["alpha"])
        self.beta = float(self.params["beta"])
        self.variant = self.params["variant"]
        self.use_so = "so" in self.variant.split("+")
        self.use_bibo = "bibo" in self.variant.split("+")
        self.bibo_eps = float(self.params["bibo_eps"])
        self.bibo_step = float(self.params["bibo_step"])
        self.bibo_steps = int(self.params["bibo_steps"])
        self.register_buffer("centres", max_mahalanobis_centres(num_classes, self.d, self.c))

    @classmethod
    def param_warnings(cls, num_classes, params):
        p = cls.validate_params(params)
        terms = p["variant"].split("+")
        out = []
        if p["d"] < num_classes - 1:
            out.append(f"mat.d = {p['d']} is below K − 1 = {num_classes - 1}: Max-Mahalanobis centres need "
                       "d ≥ K − 1 (spec P8); training will refuse to start")
        if "so" in terms and p["alpha"] == 0:
            out.append("mat.alpha = 0 switches SO off although mat.variant includes it")
        if "bibo" in terms and p["beta"] == 0:
            out.append("mat.beta = 0 switches BIBO off although mat.variant includes it (its inner PGD still runs)")
        if "bibo" in terms and p["bibo_step"] * p["bibo_steps"] < p["bibo_eps"]:
            out.append(f"mat.bibo_step × mat.bibo_steps = {p['bibo_step'] * p['bibo_steps']:.3g} is below "
                       f"mat.bibo_eps = {p['bibo_eps']:.3g}: BIBO's inner PGD cannot reach the edge of its ε-ball")
        return out

    @property
    def latent_dim(self) -> int:
        return self.d

    @property
    def uses_clean_latents(self) -> bool:
        """The adaptive objective has the BIBO term β·CD(φ(x), φ(x')) (§2.3): attacks pass φ(x)."""
        return self.use_bibo and self.beta > 0

    # --- the terms ---------------------------------------------------------------------------
    def _unit_centres(self, z: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.centres.to(z.dtype), dim=1)

    @staticmethod
    def _float(z: torch.Tensor) -> torch.Tensor:
        return fp32(z)  # cosines stay fp32 under autocast

    def cosines(self, z: torch.Tensor) -> torch.Tensor:
        """cos(z_b, μ_k) for every sample and centre: (B, K)."""
        z = self._float(z)
        return F.normalize(z, dim=1) @ self._unit_centres(z).T

    def ftc(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """L_FTC per sample (B,): 1 − cos(z, μ_y) (Eq. 4)."""
        return 1 - self.cosines(z).gather(1, y[:, None]).squeeze(1)

    def so(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """L_SO per sample (B,): ‖∇_z L_FTC‖² = (1 − cos²(z, μ_y)) / ‖z‖² (Eq. 6 in closed form;
        ‖z‖² floored at NORM_FLOOR, spec P2)."""
        z = self._float(z)
        cos_y = self.cosines(z).gather(1, y[:, None]).squeeze(1)
        return (1 - cos_y * cos_y).clamp_min(0) / z.pow(2).sum(1).clamp_min(NORM_FLOOR)

    @staticmethod
    def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """1 − cos(a_b, b_b) per row (B,)."""
        a, b = MAT._float(a), MAT._float(b)
        return 1 - (F.normalize(a, dim=1) * F.normalize(b, dim=1)).sum(1)

    def loss(self, z: torch.Tensor, y: torch.Tensor) -> LossOutput:
        """FTC (+ α·SO if the variant has it): the terms that depend on z alone."""
        ftc = self.ftc(z, y).mean()
        loss, parts = ftc, {"ftc": ftc.detach()}
        if self.use_so:
            so = self.so(z, y).mean()
            loss = loss + self.alpha * so
            parts["so"] = so.detach()
        return LossOutput(loss, {"loss": loss.detach(), **parts})

    # --- BIBO --------------------------------------------------------------------------------
    def bibo_example(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """x' ≈ argmax_{‖x' − x‖∞ ≤ ε, x' ∈ [0,1]} 1 − cos(φ(x), φ(x')) by TRADES' PGD, whole batch at once.

        The model runs in eval mode (BatchNorm running statistics untouched, dropout off), and the
        clean target φ(x) is computed in that mode too, as TRADES does; every module's mode is
        restored afterwards. Gradients are taken with respect to x' only (no parameter .grad).
        """
        modes = [(m, m.training) for m in model.modules()]
        model.eval()
        try:
            x = x.detach()
            with torch.no_grad():
                target = F.normalize(self._float(model(x)), dim=1)
            x_adv = (x + BIBO_START_STD * torch.randn_like(x)).clamp(0.0, 1.0)
            for _ in range(self.bibo_steps):
                x_adv.requires_grad_(True)
                with torch.enable_grad():
                    distance = (1 - (F.normalize(self._float(model(x_adv)), dim=1) * target).sum(1)).sum()
                    (grad,) = torch.autograd.grad(distance, x_adv)
                x_adv = x_adv.detach() + self.bibo_step * grad.sign()
                x_adv = torch.min(torch.max(x_adv, x - self.bibo_eps), x + self.bibo_eps).clamp(0.0, 1.0)
        finally:
            for module, mode in modes:
                module.training = mode
        return x_adv.detach()

    def training_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> LossOutput:
        z = model(x)
        out = self.loss(z, y)
        if self.use_bibo:
            x_adv = self.bibo_example(model, x)
            bibo = self.cosine_distance(z, model(x_adv)).mean()
            out.loss = out.loss + self.beta * bibo
            out.parts["bibo"] = bibo.detach()
            out.parts["loss"] = out.loss.detach()
        out.z = z
        return out

    # --- prediction, attacks, views ----------------------------------------------------------
    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """The transformed model's logits h = z μᵀ (§1.8, Eqs. 10–11): C‖z‖cos(z, μ_l)."""
        z = self._float(z)
        return z @ self.centres.to(z.dtype).T

    def predict(self, z: torch.Tensor) -> torch.Tensor:
        """The centre of largest cosine (Eq. 5)."""
        return self.cosines(z).argmax(dim=1)

    def adaptive_objective(self, z, y, target=None, z_clean=None):
        """What a MAT-aware attacker maximises per sample (§2.3, Sec. 4.4 of the paper).

        Untargeted: the variant's own training loss at the attacked latent z, with the BIBO inner
        maximisation collapsed to the cosine distance from the clean latent:
        CD(z, μ_y) [+ α·SO(z, y)] [+ β·CD(z_clean, z) when ``z_clean`` is given]. ``uses_clean_latents``
        tells attacks (AdaptivePGD) and adversarial training to pass the clean latents φ(x), detached.
        Targeted: −CD(z, μ_target) (pull z's direction onto the target centre).
        """
        if target is not None:
            return -self.ftc(z, target)
        value = self.ftc(z, y)
        if self.use_so:
            value = value + self.alpha * self.so(z, y)
        if self.use_bibo and z_clean is not None:
            value = value + self.beta * self.cosine_distance(z_clean, z)
        return value

    def geometry(self):
        return self.centres

    def diagnostics(self, z, y):
        cos = self.cosines(z)
        return {"mean_norm_z": float(self._float(z).norm(dim=1).mean()),
                "mean_cos_own_centre": float(cos.gather(1, y[:, None]).mean()),
                "mean_cos_pred_centre": float(cos.max(dim=1).values.mean())}
