"""Plain softmax cross-entropy: the baseline every paper compares with."""
from __future__ import annotations

import torch
from torch.nn import functional as F

from .base import LossOutput, Objective


class CrossEntropy(Objective):
    """Softmax cross-entropy on the logits z (latent dimension K).

    Arguments:
        num_classes (int): K.

    Shape:
        z: (B, K) logits; y: (B,) int64 labels. Prediction: argmax z.
    """

    name = "ce"
    title = "Cross-entropy"
    citation = "baseline (no defence)"
    PART_NAMES = ("loss",)

    def loss(self, z: torch.Tensor, y: torch.Tensor) -> LossOutput:
        loss = F.cross_entropy(z, y)
        return LossOutput(loss, {"loss": loss.detach()})
