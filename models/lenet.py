"""
A LeNet-5 style convolutional network: two conv/pool blocks and two FC layers.

Compared with the 1998 original we use ReLU and max-pooling (the modern reading of
LeNet-5), add BatchNorm after every conv and hidden FC layer, pad both convolutions by 2 so the network accepts 8x8 digits as well as
28x28 and 32x32 images, and replace the 10-way output by a linear latent mapper.

Why BatchNorm: the GCCS paper trains ResNet-18 (normalised activations). Its loss pulls latents to
vertices at distance μ_T = 70, and without normalisation the first large gradients killed every
ReLU of this small net in about one seed in five (latents collapsed to a constant, accuracy 10 %),
with CE unaffected. With BatchNorm both objectives train stably (see the closing note of issue 2).
"""

from typing import Sequence

import torch
import torch.nn as nn
from torch import Tensor

from . import LatentModel, _check_int
from .input_conv import InputConv2d


class LeNet5(LatentModel):
    r"""
    LeNet-5 style CNN in 'Gradient-Based Learning Applied to Document Recognition'
    [http://yann.lecun.com/exdb/publis/pdf/lecun-01a.pdf] (LeCun et al., 1998).

    Architecture: Conv(C, 6, 5, pad=2) -> BN -> ReLU -> MaxPool2 -> Conv(6, 16, 5, pad=2) -> BN
    -> ReLU -> MaxPool2 -> flatten -> Dropout -> Linear(16*(S//4)^2, 120) -> BN -> ReLU -> Dropout
    -> Linear(120, 84) -> BN -> ReLU -> Dropout -> mapper Linear(84, latent_dim).
    No activation after the mapper.

    Arguments:
        in_channels (int): number of image channels C.
        image_size (int): height = width S of the input image, >= 4 (two 2x2 pools must
            leave at least a 1x1 map); the flatten size is computed from it.
        latent_dim (int): size of the latent vector z.
        dropout (float): drop probability before each FC layer, including the mapper. (Default: 0.0)
        mean (Sequence[float]): per-channel mean, length 1 or C. (Default: (0.0,))
        std (Sequence[float]): per-channel std, length 1 or C. (Default: (1.0,))

    Shape:
        - x: :math:`(N, C, S, S)` where `N = number of batches`, values in [0, 1].
        - output: :math:`(N, latent\_dim)`.
        - features: [(N, 6, S//2, S//2), (N, 16, S//4, S//4), (N, 84)]; feature_dims = [6, 16, 84].

    Examples::
        >>> model = LeNet5(in_channels=1, image_size=8, latent_dim=10)   # scikit-learn digits
        >>> z = model(images)
    """

    def __init__(self, in_channels: int, image_size: int, latent_dim: int, dropout: float = 0.0,
                 mean: Sequence[float] = (0.0,), std: Sequence[float] = (1.0,)):
        super().__init__(in_channels, latent_dim, dropout, mean, std)
        image_size = _check_int("image_size", image_size, 4)
        self.image_size = image_size

        # feature extractor; padding 2 keeps the spatial size, each pool halves it (floor)
        self.conv1 = nn.Sequential(InputConv2d(self.in_channels, 6, 5, padding=2), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2))
        self.conv2 = nn.Sequential(nn.Conv2d(6, 16, 5, padding=2), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2))
        side = image_size // 2 // 2  # 8 -> 2, 28 -> 7, 32 -> 8
        flat = 16 * side * side

        # head: dropout before every FC layer (the GCCS setup keeps 0.8 on all FC layers)
        self.drop1 = nn.Dropout(self.dropout)
        self.fc1 = nn.Linear(flat, 120)
        self.bn1 = nn.BatchNorm1d(120)
        self.relu1 = nn.ReLU()
        self.drop2 = nn.Dropout(self.dropout)
        self.fc2 = nn.Linear(120, 84)
        self.bn2 = nn.BatchNorm1d(84)
        self.relu2 = nn.ReLU()
        self.drop3 = nn.Dropout(self.dropout)
        self.mapper = nn.Linear(84, self.latent_dim)  # linear latent mapper, nothing after it
        self.feature_dims = [6, 16, 84]

    def forward_features(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        c1 = self.conv1(self.normalize(x))
        c2 = self.conv2(c1)
        h = self.relu1(self.bn1(self.fc1(self.drop1(torch.flatten(c2, 1)))))
        h = self.relu2(self.bn2(self.fc2(self.drop2(h))))
        z = self.mapper(self.drop3(h))
        return [c1, c2, h], z
