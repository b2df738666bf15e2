"""Max-Mahalanobis center (MMC) loss.

Pang, Xu, Dong, Du, Chen, Zhu, "Rethinking softmax cross-entropy loss for adversarial robustness",
ICLR 2020 (../shared/papers/001_*.txt, spec: ../shared/spec/seed-mmc.md).
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

from .base import LossOutput, Objective, Param, fp32
from .centres import max_mahalanobis_centres


class MMC(Objective):
    """Pulls every latent z onto its class's fixed Max-Mahalanobis centre (Eq. 8 of the paper):

        L_MMC(z, y) = ½ ‖z − μ*_y‖²      (summed over the d dimensions, averaged over the batch)

    The centres μ* (K, d) have norm C_MM and the largest possible minimal pairwise angle
    (App. B.1, Algorithm 1 when d ≥ K − 1); they are a buffer, computed once, never trained and
    saved with the checkpoint. There is no softmax in training and no extra cross-entropy term.

    Arguments:
        num_classes (int): K.
        c_mm (float): C_MM, the norm of every centre ("MMC-10"). Default: 10.
        d (int): latent dimension. d ≥ K − 1: Algorithm 1 (a regular simplex); d = 2 < K − 1: K
            points evenly spaced on a circle; otherwise numerical max-min-angle centres. Default: 256.
        adaptive (str): which of the paper's adaptive attack objectives (App. B.4)
            ``adaptive_objective`` returns: "1" (L^{un,1}, L^{tar,1}: used in PGD, MIM, SPSA;
            default) or "2" (L^{un,2}, L^{tar,2}: the difference forms used in C&W).

    Shape:
        z: (B, d) from a linear latent layer (no activation: centres have negative coordinates);
        y: (B,) int64 labels. Logits: (B, K), −½‖z − μ*_l‖². Prediction: the nearest centre.
    """

    name = "mmc"
    title = "MMC"
    citation = "Pang et al., ICLR 2020 (Max-Mahalanobis center loss)"
    PART_NAMES = ("loss",)
    PARAMS = (
        Param("c_mm", 10.0, "C_MM: norm of every Max-Mahalanobis centre (MMC §4: MMC-10, C_MM = 10)",
              minimum=0.0, exclusive_minimum=True),
        Param("d", 256, "d: latent dimension; d ≥ K−1 gives the simplex centres of Algorithm 1 "
              "(MMC App. B.1; the authors' code uses 256)", minimum=1),
        Param("adaptive", "1", "adaptive attack objective (MMC App. B.4): 1 = −L_MMC(z,y) / L_MMC(z,y_t) "
              "(PGD, MIM, SPSA); 2 = the difference forms (C&W)", choices=("1", "2")),
    )

    def __init__(self, num_classes: int, **params):
        super().__init__(num_classes, **params)
        self.c_mm = float(self.params["c_mm"])
        self.d = int(self.params["d"])
        self.register_buffer("centres", max_mahalanobis_centres(num_classes, self.d, self.c_mm))

    @classmethod
    def param_warnings(cls, num_classes, params):
        p = cls.validate_params(params)
        if p["d"] < num_classes - 1:
            how = "evenly spaced on a circle" if p["d"] == 2 else "found numerically (max-min angle)"
            return [f"mmc.d = {p['d']} is below K − 1 = {num_classes - 1}: the centres cannot be the vertices "
                    f"of a regular simplex (MMC App. B.1 needs d ≥ K − 1); they are {how} instead"]
        return []

    @property
    def latent_dim(self) -> int:
        return self.d

    def _centres_like(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = fp32(z)
        return z, self.centres.to(z.dtype)

    def half_sq_dist(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """½‖z_b − μ*_{labels_b}‖² per sample (B,): L_MMC(z, labels) without the batch mean."""
        z, centres = self._centres_like(z)
        return 0.5 * (z - centres[labels]).pow(2).sum(1)

    def loss(self, z: torch.Tensor, y: torch.Tensor) -> LossOutput:
        # The batch mean of half_sq_dist as one fused op: mse_loss's backward is a single pass, where
        # sub/pow/sum/mean and centres[y] each cost an autograd node (~30 % of the loss's time on the
        # digits CNN); index_select is the cheaper gather.
        z, centres = self._centres_like(z)
        loss = F.mse_loss(z, centres.index_select(0, y), reduction="sum") * (0.5 / z.shape[0])
        return LossOutput(loss, {"loss": loss.detach()})

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        # Direct differences, not ‖z‖² − 2zμᵀ + ‖μ‖², which can go negative in float32 (spec §2.3).
        z, centres = self._centres_like(z)
        return -0.5 * (z[:, None, :] - centres[None, :, :]).pow(2).sum(-1)

    def predict(self, z: torch.Tensor) -> torch.Tensor:
        # The nearest centre. All centres have the norm C_MM, so argmin ‖z − μ_l‖ = argmax zᵀμ_l: one
        # (B×d)·(d×K) product instead of the (B, K, d) differences the logits need for their values.
        z, centres = self._centres_like(z)
        return (z @ centres.T).argmax(dim=1)

    def adaptive_objective(self, z, y, target=None):
        """The value the attacker maximises: −L_Ada of MMC App. B.4 (the paper's attacker minimises L_Ada).

        adaptive "1": untargeted  L_MMC(z, y);               targeted  −L_MMC(z, y_t)
        adaptive "2": untargeted  L_MMC(z, y) − L_MMC(z, ỹ); targeted  L_MMC(z, y) − L_MMC(z, y_t)
        with ỹ = argmax_{l≠y} h_l, the nearest other centre (re-chosen at every call).
        """
        own = self.half_sq_dist(z, y)
        if self.params["adaptive"] == "1":
            return own if target is None else -self.half_sq_dist(z, target)
        if target is None:
            logits = self.logits(z)
            others = logits.masked_fill(torch.nn.functional.one_hot(y, self.num_classes).bool(), float("-inf"))
            # −h_ỹ = ½‖z − μ*_ỹ‖²: the same value as half_sq_dist(z, ỹ), without a second pass
            return own + others.max(1).values
        return own - self.half_sq_dist(z, target)

    def geometry(self):
        return self.centres

    def diagnostics(self, z, y):
        z, centres = self._centres_like(z)
        return {"mean_norm_z": float(z.norm(dim=1).mean()),
                "mean_dist_own_centre": float((z - centres[y]).norm(dim=1).mean())}
