"""The one seeding policy of evaluations: every evaluation point draws from a stream of its own.

Library attacks (torchattacks' APGD, FAB, Square, PGD, ...) draw from torch's global generators and
some reseed them (``torch.random.manual_seed``, ``torch.cuda.random.manual_seed``). ``private_rng``
runs such work with the CPU generator and the evaluating device's generator seeded for this point
alone and restores both afterwards, so nothing outside the block sees a reseeded or advanced
generator. It holds ``RNG_LOCK``, the lock under which CPU training steps swap in their own random
stream (engine.train), so a training step on another device never draws in the middle of it.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager

import torch

# Global generators are process-wide: training members swap their streams in under this lock and
# evaluations seed theirs under it.
RNG_LOCK = threading.Lock()


def derived_seed(seed: int, *parts: int) -> int:
    """A seed for one part of a point (a restart, a member of an ensemble), fixed by ``seed`` and the
    parts, in [0, 2**63): restart r of seed s never shares its stream with restart r' or seed s'."""
    value = int(seed) & (2**63 - 1)
    for part in parts:
        value = (value * 1_000_003 + int(part) + 1) % (2**63 - 1)
    return value


@contextmanager
def private_rng(seed: int, device: torch.device | str = "cpu"):
    """Run the block with the CPU generator and ``device``'s generator seeded by ``seed``; restore
    both states when it ends (also on an exception)."""
    device = torch.device(device)
    cuda = []
    if device.type == "cuda":
        cuda = [device.index if device.index is not None else torch.cuda.current_device()]
    with RNG_LOCK, torch.random.fork_rng(devices=cuda):
        torch.random.default_generator.manual_seed(seed)
        for index in cuda:
            torch.cuda.default_generators[index].manual_seed(seed)
        yield
