"""The first convolution of a backbone, with a fast gradient with respect to the image on the CPU."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


class InputConv2d(nn.Conv2d):
    r"""``nn.Conv2d`` (stride 1, no dilation, one group, zero padding ≤ kernel − 1) for a network's
    first layer: the same parameters, state_dict and forward values.

    Only the image gradient differs in how it is computed. Attacks (and MAT's inner PGD) need
    ∂loss/∂x, and on the CPU oneDNN's backward-data kernel for a convolution with one input channel
    is slow: for 200 MNIST images through Conv2d(1, 6, 5) it takes ~30 ms against ~7 ms for the
    equivalent forward convolution of the output gradient with the flipped, transposed kernel,

        ∂L/∂x = conv2d(∂L/∂y, flip(W)ᵀ, padding = k − 1 − p),

    which is the backward computed here when a one-channel image requires a gradient on the CPU
    (with three channels it measured no faster). The weight and bias gradients still come from
    autograd's own convolution node. Training, where the image needs no gradient, and every GPU run
    take ``nn.Conv2d``'s own path. Not twice differentiable on that path
    (nothing in the workbench differentiates through an input gradient).

    Arguments: those of ``nn.Conv2d``; ``stride``, ``dilation``, ``groups`` and ``padding_mode`` must
    keep their defaults and ``padding`` must be integers ≤ kernel − 1.

    Shape:
        - x: (N, C_in, H, W); output (N, C_out, H + 2p − k + 1, W + 2p − k + 1).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        ok = (self.stride == (1, 1) and self.dilation == (1, 1) and self.groups == 1 and self.padding_mode == "zeros"
              and not isinstance(self.padding, str)
              and all(0 <= p <= k - 1 for p, k in zip(self.padding, self.kernel_size)))
        if not ok:
            raise ValueError("InputConv2d needs stride 1, dilation 1, one group, zero padding ≤ kernel − 1; got "
                             f"stride={self.stride}, dilation={self.dilation}, groups={self.groups}, "
                             f"padding={self.padding}, padding_mode={self.padding_mode!r}")

    def forward(self, x: Tensor) -> Tensor:
        # One input channel only: with three (RGB) the flipped convolution measured no faster.
        if self.in_channels == 1 and x.requires_grad and x.device.type == "cpu" and torch.is_grad_enabled() \
                and not torch.is_autocast_enabled("cpu"):
            # The weight and bias gradients through autograd's own node, on the detached image (the
            # engine skips it when an attack asks for ∂/∂x only); the image gradient through ours.
            y = F.conv2d(x.detach(), self.weight, self.bias, padding=self.padding)
            return _ImageGradient.apply(y, x, self.weight.detach(), self.padding)
        return super().forward(x)


class _ImageGradient(torch.autograd.Function):
    """Identity on the convolution's output y; its backward passes ∂L/∂y on and adds ∂L/∂x, computed
    as a forward convolution with the flipped, transposed kernel (see InputConv2d)."""

    @staticmethod
    def forward(ctx, y, x, weight, padding):
        ctx.save_for_backward(weight)
        ctx.padding = tuple(padding)
        return y.view_as(y)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        (weight,) = ctx.saved_tensors
        grad_x = None
        if ctx.needs_input_grad[1]:
            (kh, kw), (ph, pw) = weight.shape[2:], ctx.padding
            flipped = weight.flip((2, 3)).transpose(0, 1).contiguous()  # (C_in, C_out, k, k)
            grad_x = F.conv2d(grad_out.contiguous(), flipped, padding=(kh - 1 - ph, kw - 1 - pw))
        return grad_out, grad_x, None, None
