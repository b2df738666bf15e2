"""Metrics computed on latents and predictions (GCCS spec §7): r_AB, macro F-score, kurtosis; robust
accuracy under an attack, cached per (run, attack, parameters, ε, sample set, seed); sweeps over an ε
grid as background work; the sanity checks of attacks.md that reveal gradient masking.

Everything works on tensors and stays on their device.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable

import torch

from .config import settings_hash


def class_moments(z: torch.Tensor, y: torch.Tensor, num_classes: int):
    """Per-class counts, means (K, D) and mean squared distance to the class mean (K,)."""
    z = z.double()
    onehot = torch.nn.functional.one_hot(y, num_classes).to(z.dtype)
    counts = onehot.sum(0)
    means = (onehot.T @ z) / counts.clamp(min=1).unsqueeze(1)
    spread = (onehot.T @ ((z - means[y]) ** 2).sum(1, keepdim=True)).squeeze(1) / counts.clamp(min=1)
    return counts, means, spread


def r_ab(z: torch.Tensor, y: torch.Tensor, num_classes: int) -> tuple[float, float]:
    """Inter/intra class distance ratio r_AB (GCCS Eq. 6), mean over ordered class pairs ± 95 % CI.

    r_AB = sqrt(mean_{i∈A, j∈B} ‖z_i − z_j‖² / mean_{i, j∈A} ‖z_i − z_j‖²), with the means over all
    n×m and n×n pairs (spec §7). In closed form, with v_A the mean squared distance to the class
    mean: intra = 2·v_A and inter = ‖μ_A − μ_B‖² + v_A + v_B, so no pairwise matrix is built.
    """
    counts, means, spread = class_moments(z, y, num_classes)
    present = torch.nonzero(counts > 0).flatten()
    if len(present) < 2:
        return float("nan"), float("nan")
    m, v = means[present], spread[present]
    inter = torch.cdist(m, m) ** 2 + v.unsqueeze(1) + v.unsqueeze(0)  # row A, column B
    intra = (2 * v).clamp(min=1e-12).unsqueeze(1)
    ratios = torch.sqrt(inter / intra)
    off = ~torch.eye(len(present), dtype=torch.bool, device=ratios.device)
    values = ratios[off]
    mean = float(values.mean())
    ci = 1.96 * float(values.std()) / math.sqrt(values.numel()) if values.numel() > 1 else 0.0
    return mean, ci


def confusion_matrix(pred: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    return torch.bincount(y * num_classes + pred, minlength=num_classes**2).view(num_classes, num_classes)


def macro_f1(pred: torch.Tensor, y: torch.Tensor, num_classes: int) -> float:
    """Macro-averaged F-score from the confusion matrix (classes absent from both count as 0)."""
    cm = confusion_matrix(pred, y, num_classes).double()
    tp = cm.diagonal()
    denominator = cm.sum(0) + cm.sum(1)
    f1 = torch.where(denominator > 0, 2 * tp / denominator.clamp(min=1), torch.zeros_like(tp))
    present = (cm.sum(1) > 0) | (cm.sum(0) > 0)
    return float(f1[present].mean())


def class_kurtosis(z: torch.Tensor, y: torch.Tensor, num_classes: int) -> list[float]:
    """Per-class kurtosis m4/m2² averaged over latent components (3 for a Gaussian); NaN if n < 2."""
    z = z.double()
    counts, means, _ = class_moments(z, y, num_classes)
    onehot = torch.nn.functional.one_hot(y, num_classes).to(z.dtype)
    sq = (z - means[y]) ** 2
    m2 = (onehot.T @ sq) / counts.clamp(min=1).unsqueeze(1)
    m4 = (onehot.T @ sq**2) / counts.clamp(min=1).unsqueeze(1)
    kurt = (m4 / m2.clamp(min=1e-12) ** 2).mean(1)
    return [float(k) if n >= 2 else float("nan") for k, n in zip(kurt, counts)]


# --- robust accuracy ---------------------------------------------------------------------------------
def robust_accuracy(model, objective, x: torch.Tensor, y: torch.Tensor, attack: str, eps: float,
                    params: dict | None = None, batch_size: int = 100, cancel=None,
                    progress: Callable[[int, int], None] | None = None) -> float:
    """Accuracy against the true label of ``attack`` at ``eps`` (attacks run in batches of 100, as
    GCCS §5 does; ε = 0 is the clean accuracy). The model must be in eval mode. ``cancel``: an Event
    checked between batches; ``progress(done, total)`` is called after each batch."""
    from .attacks import build_attack  # torchattacks is only needed once someone attacks

    model.eval()
    objective.eval()
    correct = 0
    atk = build_attack(attack, model, objective, eps, **(params or {})) if eps > 0 else None
    for i in range(0, len(x), batch_size):
        if cancel is not None and cancel.is_set():
            raise InterruptedError("cancelled")
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        xa = atk(xb, yb) if atk is not None else xb
        with torch.no_grad():
            # the same decision rule as the clean accuracy of the run (PCL may predict by prototype)
            correct += int((objective.test_predictions(model, xa, model(xa)) == yb).sum())
        if progress is not None:
            progress(min(i + batch_size, len(x)), len(x))
    return correct / len(x)


# --- cached results ---------------------------------------------------------------------------------
def result_key(run_id: str, kind: str, settings: dict[str, Any]) -> str:
    """The store key of one evaluation of one run: ``<run>:<kind>:<hash of everything that shapes it>``."""
    return f"{run_id}:{kind}:{settings_hash(settings)}"


def accuracy_settings(attack: str, params: dict[str, Any], eps: float, samples: int, seed: int = 0) -> dict[str, Any]:
    """What determines a robust-accuracy number: attack, its parameters, ε, the first ``samples`` test
    points and the seed of its random starts."""
    return {"attack": attack, "params": dict(params), "eps": float(eps), "samples": int(samples), "seed": int(seed)}


def accuracy_point(store, run_id: str, model, objective, x: torch.Tensor, y: torch.Tensor, attack: str,
                   params: dict[str, Any], eps: float, seed: int = 0, force: bool = False, cancel=None,
                   progress: Callable[[int, int], None] | None = None) -> tuple[dict[str, Any], bool]:
    """Robust accuracy of one run at one ε, from the store when cached, else computed and stored.

    Returns (result, cached). The result dict holds kind "accuracy", run_id, attack, params, eps,
    samples, seed, accuracy, seconds (of the computation) and created. ``params`` must be validated
    (``engine.attacks.attack_params``). The random starts are seeded per point, so a point does not
    depend on which other points were computed before it.
    """
    settings = accuracy_settings(attack, params, eps, len(y), seed)
    key = result_key(run_id, "accuracy", settings)
    cached = None if force or store is None else store.get_result(key)
    if isinstance(cached, dict):
        return cached, True
    started = time.perf_counter()
    torch.manual_seed(seed)
    accuracy = robust_accuracy(model, objective, x, y, attack, eps, params, cancel=cancel, progress=progress)
    result = {"kind": "accuracy", "run_id": run_id, **settings, "accuracy": accuracy,
              "seconds": time.perf_counter() - started, "created": time.time()}
    if store is not None:
        store.put_result(key, result)
    return result, False


def sanity_warnings(eps: list[float], accuracy: list[float]) -> list[str]:
    """Signs of gradient masking that one sweep can show (attacks.md, after Carlini et al. 2019)."""
    out = []
    order = sorted(range(len(eps)), key=lambda i: eps[i])
    for a, b in zip(order, order[1:]):
        if accuracy[b] > accuracy[a] + 0.01:
            out.append(f"accuracy rises from {accuracy[a]:.3f} at ε = {eps[a]:g} to {accuracy[b]:.3f} at "
                       f"ε = {eps[b]:g}: a stronger attack should never do worse (gradient masking?)")
    big = order[-1]
    if eps[big] >= 0.3 and accuracy[big] > 0.1:
        out.append(f"accuracy is still {accuracy[big]:.3f} at ε = {eps[big]:g}: at such ε an attack should reach "
                   "~0 (gradient masking, or too few steps?)")
    return out
