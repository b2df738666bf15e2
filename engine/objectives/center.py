"""Softmax cross-entropy plus the centre loss: a baseline of the I-SCE, MMC and PCL papers.

Wen, Zhang, Li, Qiao, "A Discriminative Feature Learning Approach for Deep Face Recognition",
ECCV 2016 (spec: ../shared/spec/seed-mmc.md §1.4, seed-pcl.md §1.7 and §1.9, seed-isce.md §1.6).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .base import LossOutput, Objective, Param, fp32


class CenterLoss(Objective):
    """CE on a learned linear classifier of the deep features z, plus λ times their distance to
    per-class centres that follow the features (Wen et al. Eqs. 2, 4 and 5).

        logits = W z + b                                   (W: K × d, b: K; trained by the main optimiser)
        L = CE(logits, y) + λ · (1/B) Σ_i ½ ‖z_i − c_{y_i}‖²

    The centres c (K × d) are a buffer, not a parameter: after every optimiser step ``after_step``
    moves them by Wen et al.'s rule on the batch's (detached) features,

        Δc_j = Σ_{i: y_i = j} (c_j − z_i) / (1 + n_j),     c_j ← c_j − α·Δc_j,

    so a class absent from the batch keeps its centre. They start at the origin.

    Arguments:
        num_classes (int): K.
        lam (float): λ, weight of the centre loss. Default: 0.003 (Wen et al.).
        alpha (float): α ∈ [0, 1], the centres' learning rate. Default: 0.5 (Wen et al.).
        d (int): dimension of the deep features z (the latent the model ends in). Default: 64.

    Shape:
        z: (B, d) features, the output of the model's linear latent mapper; y: (B,).
        Prediction: argmax (W z + b). ``geometry()`` returns the current centres (K, d).
        CE and the centre loss are both batch means (Wen et al. sum both over the batch: same ratio).
    """

    name = "center"
    title = "Center loss"
    citation = "Wen et al., ECCV 2016 (softmax + center loss)"
    PART_NAMES = ("loss", "ce", "center")
    PARAMS = (
        Param("lam", 0.003, "λ: weight of the center loss beside CE (Wen et al. 2016: 0.003)", minimum=0.0),
        Param("alpha", 0.5, "α: learning rate of the class centres, in [0, 1] (Wen et al. 2016: 0.5)",
              minimum=0.0, maximum=1.0),
        Param("d", 64, "d: dimension of the deep features the center loss acts on (Wen et al. use 2 for "
              "MNIST plots; not given by the seed papers)", minimum=2, maximum=4096),
    )

    def __init__(self, num_classes: int, **params):
        super().__init__(num_classes, **params)
        self.lam = float(self.params["lam"])
        self.alpha = float(self.params["alpha"])
        self.dim = int(self.params["d"])
        self.classifier = nn.Linear(self.dim, num_classes)
        self.register_buffer("centres", torch.zeros(num_classes, self.dim))

    @classmethod
    def param_warnings(cls, num_classes, params):
        p = cls.validate_params(params)
        if p["lam"] >= 1:
            return [f"center.lam = {p['lam']:g}: a center loss this strong can collapse features and centres "
                    "towards 0 (seed-mmc.md §1.4); Wen et al. use 0.003"]
        return []

    @property
    def latent_dim(self) -> int:
        return self.dim

    def loss(self, z: torch.Tensor, y: torch.Tensor) -> LossOutput:
        z = fp32(z)
        ce = F.cross_entropy(self.classifier(z), y)
        # ½ mean_i ‖z_i − c_{y_i}‖² as one fused op (one backward pass instead of five nodes)
        center = F.mse_loss(z, self.centres.to(z.dtype).index_select(0, y), reduction="sum") * (0.5 / z.shape[0])
        loss = ce + self.lam * center
        return LossOutput(loss, {"loss": loss.detach(), "ce": ce.detach(), "center": center.detach()})

    @torch.no_grad()
    def after_step(self, z: torch.Tensor, y: torch.Tensor) -> None:
        c = self.centres
        counts = torch.bincount(y, minlength=self.num_classes).to(c.dtype)[:, None]  # n_j
        sums = torch.zeros_like(c).index_add_(0, y, z.to(c.dtype))  # Σ_{y_i=j} z_i
        delta = (counts * c - sums) / (1.0 + counts)  # Σ_{y_i=j}(c_j − z_i)/(1 + n_j)
        c.sub_(self.alpha * delta)

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        z = fp32(z)
        return self.classifier(z)

    # adaptive_objective: the base class's CE on the logits (the defence is an ordinary softmax
    # classifier; the centres do not take part in the decision).

    def geometry(self):
        return self.centres

    def diagnostics(self, z, y):
        z = fp32(z)
        return {"mean_norm_z": float(z.norm(dim=1).mean()),
                "mean_dist_own_centre": float((z - self.centres.to(z.dtype)[y]).norm(dim=1).mean())}
