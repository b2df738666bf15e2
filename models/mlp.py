"""
A two-hidden-layer multilayer perceptron: the smallest backbone, fast enough for
8x8 digits and MNIST on a CPU.
"""

from typing import Sequence

import torch
import torch.nn as nn
from torch import Tensor

from . import LatentModel, _check_int


class MLP(LatentModel):
    r"""
    Multilayer perceptron 'flatten -> 256 -> 128 -> latent'.

    Architecture (as in the MLP baselines of 'Learning Representations by
    Back-propagating Errors', Rumelhart et al. 1986; layer widths as commonly used
    for MNIST): flatten -> Linear(C*H*W, 256) -> ReLU -> Dropout -> Linear(256, 128)
    -> ReLU -> Dropout -> mapper Linear(128, latent_dim). No activation after the
    mapper.

    Arguments:
        in_channels (int): number of image channels C.
        image_size (int): height = width of the input image (the first layer's size depends on it).
        latent_dim (int): size of the latent vector z.
        dropout (float): drop probability before each FC layer that reads hidden units. (Default: 0.0)
        mean (Sequence[float]): per-channel mean, length 1 or C. (Default: (0.0,))
        std (Sequence[float]): per-channel std, length 1 or C. (Default: (1.0,))

    Shape:
        - x: :math:`(N, C, H, W)` where `N = number of batches`, `H = W = image_size`, values in [0, 1].
        - output: :math:`(N, latent\_dim)`.
        - features: [(N, 256), (N, 128)] (the two hidden ReLU activations); feature_dims = [256, 128].

    Examples::
        >>> model = MLP(in_channels=1, image_size=28, latent_dim=10)
        >>> z = model(images)
    """

    def __init__(self, in_channels: int, image_size: int, latent_dim: int, dropout: float = 0.0,
                 mean: Sequence[float] = (0.0,), std: Sequence[float] = (1.0,)):
        super().__init__(in_channels, latent_dim, dropout, mean, std)
        image_size = _check_int("image_size", image_size, 1)
        self.image_size = image_size
        self.fc1 = nn.Linear(self.in_channels * image_size * image_size, 256)
        self.relu1 = nn.ReLU()
        # no dropout on the raw pixels: dropout goes on the FC layers reading hidden units
        self.drop1 = nn.Dropout(self.dropout)
        self.fc2 = nn.Linear(256, 128)
        self.relu2 = nn.ReLU()
        self.drop2 = nn.Dropout(self.dropout)
        self.mapper = nn.Linear(128, self.latent_dim)  # linear latent mapper, nothing after it
        self.feature_dims = [256, 128]

    def forward_features(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        x = torch.flatten(self.normalize(x), 1)
        h1 = self.relu1(self.fc1(x))
        h2 = self.relu2(self.fc2(self.drop1(h1)))
        z = self.mapper(self.drop2(h2))
        return [h1, h2], z
