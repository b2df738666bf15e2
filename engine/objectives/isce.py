"""Inference-softmax cross-entropy (I-SCE).

Song, Wang, He, Zhou, "Robustness Learning via Inference-Softmax Cross Entropy in Misaligned
Distribution of Image", Mathematics 2022, 10, 3716 (../shared/papers/002_*.txt,
spec: ../shared/spec/seed-isce.md).
"""
from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from .base import LossOutput, Objective, Param, fp32

# The paper's search ranges (Fig. 4, spec §1.6 and §3): settings outside them are legal but untested.
S_SWEEP = (1.0, 2.0)
M_SWEEP = (0.0, 0.1)


def loss_floor(num_classes: int, s: float, m: float) -> float:
    """Smallest I-SCE loss any unit-norm logit vector can reach (spec §1.5):

        L_min = ln(1 + (K − 1)·exp(−(√(s² + 1/(K − 1)) + m)))

    reached at f_y = s/r, f_j = −1/((K − 1)·r) with r = √(s² + 1/(K − 1)). K = 10, s = 1, m = 0.1
    gives 1.345: the training loss plateaus there, which is not a failure to converge.
    """
    k = int(num_classes)
    return math.log1p((k - 1) * math.exp(-(math.sqrt(s * s + 1.0 / (k - 1)) + m)))


class ISCE(Objective):
    """Cross-entropy on L2-normalised logits whose target logit is scaled by s and raised by m.

    With f = z / ‖z‖₂ (the K logits of each sample normalised, spec §1.3), training (Eq. 4) is
    ordinary cross-entropy on the modified logits

        z'_y = s·f_y + m,   z'_j = f_j (j ≠ y)        L = −ln softmax(z')_y

    At test time no label exists: the same s and m go to the argmax class ŷ = argmax f
    (the "inference process" of §1.4). ``logits`` returns these test-time scores (what attacks
    see); the prediction is ŷ, taken before s and m are applied, so it never changes (spec §7,
    ambiguity 17).

    Arguments:
        num_classes (int): K; the latent z is the K raw logits.
        s (float): scale of the (true or argmax) class's normalised logit, ≥ 1. Default: 1.
        m (float): "inference information" added to that logit, ≥ 0 (0 is the normalised-softmax
            ablation of spec §2, pitfall 5). Default: 0.1.

    Shape:
        z: (B, K) raw logits; y: (B,) int64 labels. Prediction: argmax z (= argmax f).
        The loss is the batch mean (spec §7, ambiguity 16). It is invariant to positive rescaling of
        z and cannot fall below ``loss_floor(K, s, m)`` (≈ 1.345 for the paper's setting).

    Adaptive attack (spec §2, pitfall 7): ``logits`` gives the paper-faithful CE on z_test; the
    defence-aware objective is the CW margin on the raw logits, max_{j≠y} z_j − z_y, which neither
    the normalisation nor the m boost can blunt.
    """

    name = "isce"
    title = "I-SCE"
    citation = "Song et al., Mathematics 2022 (inference-softmax cross-entropy)"
    PART_NAMES = ("loss",)
    PARAMS = (
        Param("s", 1.0, "s: scale of the true-class normalised logit (I-SCE Eq. 2; paper 1, sweep 1–2)",
              minimum=1.0),
        Param("m", 0.1, "m: inference information added to the true-class logit (I-SCE Eq. 2; paper 0.1, "
              "sweep (0, 0.1]; 0 = normalised-softmax ablation)", minimum=0.0),
    )

    def __init__(self, num_classes: int, **params):
        super().__init__(num_classes, **params)
        self.s = float(self.params["s"])
        self.m = float(self.params["m"])

    @classmethod
    def param_warnings(cls, num_classes, params):
        p = cls.validate_params(params)
        out = []
        if p["s"] > S_SWEEP[1]:
            out.append(f"isce.s = {p['s']:g} is outside the paper's sweep [1, 2] (I-SCE Fig. 4): s > 1 "
                       "\"increase[s] the risk of gradient exposure\"")
        if p["m"] == 0:
            out.append("isce.m = 0: this is the normalised-softmax ablation, not I-SCE (seed-isce.md §2, pitfall 5)")
        elif p["m"] > M_SWEEP[1]:
            out.append(f"isce.m = {p['m']:g} is outside the paper's sweep (0, 0.1] (I-SCE Fig. 4)")
        return out

    def loss_floor(self) -> float:
        return loss_floor(self.num_classes, self.s, self.m)

    def _boost(self, f: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
        """f with s·f_c + m in column ``cls`` of each row (additive mask: no in-place indexing)."""
        onehot = F.one_hot(cls, self.num_classes).to(f.dtype)
        return f + onehot * ((self.s - 1.0) * f + self.m)

    @staticmethod
    def _normalise(z: torch.Tensor) -> torch.Tensor:
        return F.normalize(fp32(z), p=2, dim=1)

    def loss(self, z: torch.Tensor, y: torch.Tensor) -> LossOutput:
        loss = F.cross_entropy(self._boost(self._normalise(z), y), y)
        return LossOutput(loss, {"loss": loss.detach()})

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        f = self._normalise(z)
        return self._boost(f, f.argmax(dim=1))

    def predict(self, z: torch.Tensor) -> torch.Tensor:
        return self._normalise(z).argmax(dim=1)

    def adaptive_objective(self, z, y, target=None):
        # CW margin on the raw logits: blind to the normalisation and to the m boost.
        z = fp32(z)
        cls = y if target is None else target
        own = z.gather(1, cls[:, None])[:, 0]
        others = z.masked_fill(F.one_hot(cls, self.num_classes).bool(), float("-inf")).amax(dim=1)
        return others - own if target is None else own - others

    def diagnostics(self, z, y):
        # ‖z‖ drifts freely (the loss is scale-invariant) and a large one shrinks every gradient;
        # f_y and Σ_{j≠y} e^{f_j} are the paper's Fig. 3 constants (≈ 0.97 and ≈ 8 on MNIST/CIFAR).
        f = self._normalise(z)
        onehot = F.one_hot(y, self.num_classes).to(f.dtype)
        return {"mean_norm_z": float(z.to(f.dtype).norm(dim=1).mean()),
                "mean_f_y": float((f * onehot).sum(1).mean()),
                "mean_sum_exp_other": float((f.exp() * (1 - onehot)).sum(1).mean())}
