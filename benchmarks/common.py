"""What the benchmark scripts share: their command-line settings, the device, GPU synchronisation."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.train import resolve_device  # noqa: E402


def parser(doc: str, repeats: int) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc.split("\n")[0])
    p.add_argument("--dataset", default="digits")
    p.add_argument("--model", default="cnn")
    p.add_argument("--batch-size", type=int, default=200)
    p.add_argument("--repeats", type=int, default=repeats)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (the app's worker uses cores − 1)")
    return p


def setup(args: argparse.Namespace) -> torch.device:
    if args.threads:
        torch.set_num_threads(args.threads)
    return resolve_device(args.device)


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so that wall-clock times mean what they say."""
    if device.type == "cuda":
        torch.cuda.synchronize()
