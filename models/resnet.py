"""
torchvision's ResNet-18, adapted to small images (8x8 to 32x32).

The ImageNet stem (7x7 stride-2 conv + 3x3 stride-2 max-pool) shrinks the input 4x
before the first residual block: a 32x32 image would reach layer4 as 1x1 and an 8x8
one would vanish. So, as is standard for CIFAR, the stem becomes a 3x3 stride-1 conv
and the max-pool is removed; the 1000-way fc becomes Dropout + a linear latent mapper.
We reuse torchvision's blocks (not a copy) so the residual stages are the reference ones.
"""

from typing import Sequence

import torch
import torch.nn as nn
from torch import Tensor

from . import LatentModel
from .input_conv import InputConv2d


class ResNet18(LatentModel):
    r"""
    ResNet-18 in 'Deep Residual Learning for Image Recognition'
    [https://arxiv.org/abs/1512.03385] (He et al., 2016), built from
    ``torchvision.models.resnet18(weights=None)`` with a small-image stem.

    Changes from torchvision: conv1 = Conv2d(C, 64, 3, stride=1, padding=1, bias=False)
    (Kaiming-normal init, like torchvision's convs); maxpool = Identity; fc replaced by
    Dropout -> mapper Linear(512, latent_dim), with no activation after the mapper.

    Arguments:
        in_channels (int): number of image channels C.
        latent_dim (int): size of the latent vector z.
        dropout (float): drop probability before the mapper (the only FC layer). (Default: 0.0)
        mean (Sequence[float]): per-channel mean, length 1 or C. (Default: (0.0,))
        std (Sequence[float]): per-channel std, length 1 or C. (Default: (1.0,))

    Shape:
        - x: :math:`(N, C, H, W)` where `N = number of batches`, H, W >= 8 recommended, values in [0, 1].
        - output: :math:`(N, latent\_dim)`.
        - features: outputs of layer1..layer4, [(N, 64, H, W), (N, 128, H/2, W/2),
          (N, 256, H/4, W/4), (N, 512, H/8, W/8)]; feature_dims = [64, 128, 256, 512].

    Examples::
        >>> model = ResNet18(in_channels=3, latent_dim=10, mean=(0.4914, 0.4822, 0.4465),
        ...                  std=(0.2470, 0.2435, 0.2616))
        >>> z = model(images)
    """

    def __init__(self, in_channels: int, latent_dim: int, dropout: float = 0.0,
                 mean: Sequence[float] = (0.0,), std: Sequence[float] = (1.0,)):
        super().__init__(in_channels, latent_dim, dropout, mean, std)
        # num_classes=latent_dim: torchvision's fc is then exactly Linear(512, latent_dim), our mapper
        from torchvision.models import resnet18  # imported here: torchvision costs a second to import

        net = resnet18(weights=None, num_classes=self.latent_dim)

        # small-image stem; re-initialised the way torchvision initialises its convs
        self.conv1 = InputConv2d(self.in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.bn1 = net.bn1
        self.relu = net.relu
        self.maxpool = nn.Identity()  # no max-pool: keep the resolution for small images
        self.layer1 = net.layer1
        self.layer2 = net.layer2
        self.layer3 = net.layer3
        self.layer4 = net.layer4
        self.avgpool = net.avgpool  # AdaptiveAvgPool2d(1): any input size works
        self.drop = nn.Dropout(self.dropout)
        self.mapper = net.fc  # linear latent mapper, nothing after it
        self.feature_dims = [64, 128, 256, 512]

    def forward_features(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(self.normalize(x)))))
        f1 = self.layer1(x)
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        f4 = self.layer4(f3)
        h = torch.flatten(self.avgpool(f4), 1)
        z = self.mapper(self.drop(h))
        return [f1, f2, f3, f4], z
