"""
Backbones that map an image to a latent vector z.

Every loss in this workbench (softmax cross-entropy, centre losses, GCCS, ...) works
on the same thing: a latent vector z = f(x) with one coordinate per latent
dimension. So every backbone here shares one contract, `LatentModel`:

    z = model(x)                          # x: (B, C, H, W) in [0, 1] -> z: (B, latent_dim)
    features, z = model.forward_features(x)

Two design decisions are baked into the base class:

1. Normalisation lives INSIDE the model, as buffers. Adversarial attacks (PGD, FGSM,
   torchattacks, ...) take eps in pixel units and clamp to [0, 1], so the model must
   accept raw pixels; keeping mean/std as buffers also means a checkpoint carries them.
2. The last op is a plain `nn.Linear` (`self.mapper`) with no activation after it,
   because latent class centres may sit at negative coordinates (e.g. the vertices
   of a simplex centred on the origin); a ReLU there would make them unreachable.

This file is read top to bottom: the base class, then the registry and `build_model`.
"""

import numbers
from typing import Sequence

import torch
import torch.nn as nn
from torch import Tensor


# -----------------------------------------------------------------------------
# argument checks shared by every backbone (error messages name the field)

def _check_int(name: str, value, minimum: int) -> int:
    # bool is an int subclass in Python; True as a channel count is always a mistake
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_dropout(value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"dropout: expected a probability in [0, 1), got {value!r}")
    value = float(value)
    # written as `not (...)` so that NaN is rejected too
    if not (0.0 <= value < 1.0):
        raise ValueError(f"dropout: expected a probability in [0, 1), got {value!r}")
    return value


def _check_stats(name: str, value, in_channels: int, positive: bool) -> Tensor:
    """Turn mean/std into a (1, C, 1, 1) float tensor; length 1 broadcasts to any C."""
    if isinstance(value, (str, bytes)):
        raise ValueError(f"{name}: expected a sequence of numbers, got {value!r}")
    try:
        t = torch.as_tensor(value, dtype=torch.float32).detach().clone().flatten()
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{name}: expected a sequence of numbers, got {value!r}") from None
    if t.numel() not in (1, in_channels):
        raise ValueError(f"{name}: expected 1 or in_channels={in_channels} values, got {t.numel()}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name}: values must be finite, got {value!r}")
    if positive and not (t > 0).all():
        raise ValueError(f"{name}: values must be > 0, got {value!r}")
    # store the expanded copy so the buffer is always (1, C, 1, 1), whatever was passed
    return t.expand(in_channels).clone().view(1, in_channels, 1, 1)


# -----------------------------------------------------------------------------
# the base class

class LatentModel(nn.Module):
    r"""
    Base class of every backbone: normalises pixels, returns a latent vector.

    Subclasses build their layers after calling ``super().__init__``, set
    ``self.feature_dims`` and ``self.mapper`` (the final ``nn.Linear``), and implement
    ``forward_features``.

    Arguments:
        in_channels (int): number of image channels C (>= 1).
        latent_dim (int): size of the latent vector z (>= 1).
        dropout (float): drop probability used on the fully connected layers, in [0, 1). (Default: 0.0)
        mean (Sequence[float]): per-channel mean, length 1 or C. (Default: (0.0,))
        std (Sequence[float]): per-channel std (> 0), length 1 or C. (Default: (1.0,))

    Attributes:
        latent_dim (int): size of z.
        feature_dims (list[int]): channel / feature count of each tensor returned in
            the first element of ``forward_features`` (the depths before z).
        mean, std (buffers): shape (1, C, 1, 1); saved in the state_dict.

    Shape:
        - x: :math:`(N, C, H, W)` where `N = number of batches`, values in [0, 1].
        - output: :math:`(N, latent\_dim)`.
    """

    def __init__(self, in_channels: int, latent_dim: int, dropout: float = 0.0,
                 mean: Sequence[float] = (0.0,), std: Sequence[float] = (1.0,)):
        super().__init__()
        self.in_channels = _check_int("in_channels", in_channels, 1)
        self.latent_dim = _check_int("latent_dim", latent_dim, 1)
        self.dropout = _check_dropout(dropout)
        # buffers, not parameters: they follow .to(device) and the state_dict but are not trained
        self.register_buffer("mean", _check_stats("mean", mean, self.in_channels, positive=False))
        self.register_buffer("std", _check_stats("std", std, self.in_channels, positive=True))
        self.feature_dims: list[int] = []

    def normalize(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std

    def forward_features(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        """Return (intermediate features at several depths, z)."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_features(x)[1]

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, latent_dim={self.latent_dim}, dropout={self.dropout}"


# -----------------------------------------------------------------------------
# the registry; imported after LatentModel because every backbone subclasses it

from .mlp import MLP  # noqa: E402
from .lenet import LeNet5  # noqa: E402
from .resnet import ResNet18  # noqa: E402
from .cifar_resnet import CifarResNet  # noqa: E402

ARCHITECTURES = ("mlp", "cnn", "resnet18", "resnet20", "resnet32")  # "cnn" = LeNet-5 style


def build_model(arch: str, in_channels: int, image_size: int, latent_dim: int, *,
                dropout: float = 0.0, mean: Sequence[float] = (0.0,),
                std: Sequence[float] = (1.0,)) -> LatentModel:
    """Build the backbone named `arch` for (in_channels, image_size, image_size) inputs."""
    if not isinstance(arch, str) or arch not in ARCHITECTURES:
        raise ValueError(f"model: unknown architecture {arch!r}; allowed: {', '.join(ARCHITECTURES)}")
    image_size = _check_int("image_size", image_size, 1)
    common = dict(in_channels=in_channels, latent_dim=latent_dim, dropout=dropout, mean=mean, std=std)
    if arch == "mlp":
        return MLP(image_size=image_size, **common)
    if arch == "cnn":
        return LeNet5(image_size=image_size, **common)
    if arch == "resnet18":
        return ResNet18(**common)
    # resnet20 -> depth 20, resnet32 -> depth 32 (6n+2 with n = 3, 5)
    return CifarResNet(depth=int(arch[len("resnet"):]), **common)


__all__ = ["ARCHITECTURES", "build_model", "LatentModel",
           "MLP", "LeNet5", "ResNet18", "CifarResNet"]
