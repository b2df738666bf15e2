"""Random rotation: a natural, not adversarial, perturbation (MMC Table 2, Part III)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torchattacks.attack import Attack


class RandomRotation(Attack):
    r"""Rotates every image by its own angle drawn uniformly from [−degrees, degrees] about the image
    centre (MMC, Pang et al. 2020, Table 2 Part III: ±30°, after Engstrom et al. 2019, "Exploring the
    landscape of spatial robustness"; the authors' code uses Keras ``rotation_range=30``). Bilinear
    interpolation; pixels rotated in from outside take the nearest border value (Keras' default
    ``fill_mode="nearest"``). The model is never queried.

    Arguments:
        model (nn.Module): the attacked model (unused; kept for the torchattacks shape).
        degrees (float): largest absolute angle in degrees. Default: 30.

    Shape:
        images: (N, C, H, W) in [0, 1]; labels: (N,) (unused); output: (N, C, H, W) in [0, 1].
    """

    def __init__(self, model, degrees=30.0):
        super().__init__("RandomRotation", model)
        self.degrees = degrees
        self.supported_mode = ["default"]

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        images = images.clone().detach().to(self.device)
        n = len(images)
        angle = (torch.rand(n, device=images.device) * 2 - 1) * math.radians(self.degrees)
        cos, sin = torch.cos(angle), torch.sin(angle)
        zero = torch.zeros_like(cos)
        theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)  # (N, 2, 3)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        rotated = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return rotated.clamp(0, 1).detach()
