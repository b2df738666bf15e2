"""
The CIFAR-10 ResNets of He et al. 2016, section 4.2 (ResNet-20, -32, -44, -56, ...).

6n+2 weighted layers: a 3x3 stem conv with 16 channels, three stages of n BasicBlocks
(16, 32, 64 channels; the 2nd and 3rd stages start with stride 2), global average pool,
then one FC layer. Shortcuts follow "option A" of the paper: when the shape changes the
shortcut is the strided identity with zero-padded extra channels, so the shortcut adds
no parameters and ResNet-20 really has 19 convs + 1 linear. Reference implementation
used for the details: https://github.com/akamaster/pytorch_resnet_cifar10.
"""

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from . import LatentModel, _check_int
from .input_conv import InputConv2d


class PadShortcut(nn.Module):
    """Option A shortcut: subsample by `stride` and zero-pad the channels up to `out_planes`."""

    def __init__(self, in_planes: int, out_planes: int, stride: int):
        super().__init__()
        self.stride = stride
        self.extra = out_planes - in_planes

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, ::self.stride, ::self.stride]
        # pad spec runs from the last dim backwards: (W_left, W_right, H_top, H_bottom, C_front, C_back);
        # split the extra channels evenly on both sides, as the reference implementation does
        front = self.extra // 2
        return F.pad(x, (0, 0, 0, 0, front, self.extra - front))


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut, then ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        if stride != 1 or in_planes != planes:
            self.shortcut = PadShortcut(in_planes, planes, stride)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(LatentModel):
    r"""
    CIFAR ResNet in 'Deep Residual Learning for Image Recognition'
    [https://arxiv.org/abs/1512.03385] (He et al., 2016), section 4.2.

    Architecture: Conv(C, 16, 3) -> BN -> ReLU -> 3 stages of n BasicBlocks with
    16 / 32 / 64 channels (strides 1, 2, 2; option A zero-padding shortcuts) -> global
    average pool -> Dropout -> mapper Linear(64, latent_dim). No activation after the
    mapper. Convs and the mapper use Kaiming-normal init, BN starts at weight 1, bias 0.

    Arguments:
        depth (int): total number of weighted layers, 6n+2 (20 -> n=3, 32 -> n=5).
        in_channels (int): number of image channels C.
        latent_dim (int): size of the latent vector z.
        dropout (float): drop probability before the mapper (the only FC layer). (Default: 0.0)
        mean (Sequence[float]): per-channel mean, length 1 or C. (Default: (0.0,))
        std (Sequence[float]): per-channel std, length 1 or C. (Default: (1.0,))

    Shape:
        - x: :math:`(N, C, H, W)` where `N = number of batches`, H, W >= 8 recommended, values in [0, 1].
        - output: :math:`(N, latent\_dim)`.
        - features: output of each stage, [(N, 16, H, W), (N, 32, H/2, W/2), (N, 64, H/4, W/4)];
          feature_dims = [16, 32, 64].

    Examples::
        >>> model = CifarResNet(depth=20, in_channels=3, latent_dim=10)
        >>> z = model(images)
    """

    def __init__(self, depth: int, in_channels: int, latent_dim: int, dropout: float = 0.0,
                 mean: Sequence[float] = (0.0,), std: Sequence[float] = (1.0,)):
        super().__init__(in_channels, latent_dim, dropout, mean, std)
        depth = _check_int("depth", depth, 8)
        if (depth - 2) % 6 != 0:
            raise ValueError(f"depth: expected 6n+2 (20, 32, 44, 56, ...), got {depth}")
        n = (depth - 2) // 6
        self.depth = depth

        self.conv1 = InputConv2d(self.in_channels, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._make_stage(16, 16, n, stride=1)
        self.layer2 = self._make_stage(16, 32, n, stride=2)
        self.layer3 = self._make_stage(32, 64, n, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(self.dropout)
        self.mapper = nn.Linear(64, self.latent_dim)  # linear latent mapper, nothing after it
        self.feature_dims = [16, 32, 64]

        # Kaiming init as in the paper (its ref. [13]); applied in module order, so it is
        # deterministic given torch.manual_seed
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    @staticmethod
    def _make_stage(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
        # only the first block of a stage changes resolution / width
        layers = [BasicBlock(in_planes, planes, stride)]
        layers += [BasicBlock(planes, planes, 1) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward_features(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        x = F.relu(self.bn1(self.conv1(self.normalize(x))))
        f1 = self.layer1(x)
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        h = torch.flatten(self.avgpool(f3), 1)
        z = self.mapper(self.drop(h))
        return [f1, f2, f3], z
