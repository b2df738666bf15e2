"""On-device data augmentation of training batches: batched tensor operations, seeded per run.

The recipes the specs recommend (../shared/spec/seed-pcl.md, seed-mat.md, seed-mmc.md, seed-isce.md;
TRADES' convention, as the papers leave it unstated): CIFAR-10/100 train on random 32×32 crops of the
image zero-padded by 4 pixels, mirrored left-right with probability 1/2; SVHN on the crops alone (a
mirrored digit is another symbol); the MNIST family and digits on the images as they are.
Augmentation is applied to the training batches only, once per step, so every member of a lockstep
job sees the same augmented images; evaluation and attacks always see the test images as stored.

    augment_batch(x, mode, generator) -> x'
        x: (B, C, H, W) float images on any device; mode: "none", "crop" or "crop-flip";
        generator: a torch.Generator on x's device (the run's augmentation stream).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

AUGMENTATIONS = ("auto", "none", "crop", "crop-flip")
# "auto": each dataset's own recipe
DATASET_AUGMENTATION = {"cifar10": "crop-flip", "cifar100": "crop-flip", "svhn": "crop"}
PAD = 4  # pixels of zero padding around the image before the crop (CIFAR and SVHN recipes)


def resolve(mode: str, dataset: str) -> str:
    """The augmentation a run trains with: ``mode``, or the dataset's own recipe for "auto"."""
    return DATASET_AUGMENTATION.get(dataset, "none") if mode == "auto" else mode


def augment_batch(x: torch.Tensor, mode: str, generator: torch.Generator, pad: int = PAD) -> torch.Tensor:
    """A random crop of each zero-padded image (a uniform shift of up to ``pad`` pixels each way),
    and for "crop-flip" a left-right mirror with probability 1/2: two random draws a batch, one
    gather, no per-sample Python. "none" returns ``x`` itself."""
    if mode == "none":
        return x
    if mode not in ("crop", "crop-flip"):
        raise ValueError(f"augmentation must be one of none, crop, crop-flip; got {mode!r}")
    b, _, h, w = x.shape
    shifts = torch.randint(0, 2 * pad + 1, (2, b), generator=generator, device=generator.device).to(x.device)
    rows = shifts[0][:, None] + torch.arange(h, device=x.device)  # (B, H): rows of the padded image
    cols = shifts[1][:, None] + torch.arange(w, device=x.device)  # (B, W)
    if mode == "crop-flip":
        mirrored = torch.rand(b, generator=generator, device=generator.device).to(x.device) < 0.5
        cols = torch.where(mirrored[:, None], cols.flip(1), cols)
    padded = F.pad(x, (pad, pad, pad, pad))
    # advanced indices around a slice: the result is (B, H, W, C)
    crops = padded[torch.arange(b, device=x.device)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
    return crops.permute(0, 3, 1, 2).contiguous(memory_format=torch.contiguous_format)
