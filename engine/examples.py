"""The adversarial-examples gallery as data: clean test images, and for each chosen run its own
white-box adversarial image, the perturbation, and its predictions with their confidence.

Each run is attacked on its own (the attack differentiates that run's model and objective), with the
random starts seeded the same way for every run, each run in a private random stream
(``engine.rng.private_rng``: no other job's generator is reseeded or advanced), so a gallery is
reproducible and does not depend on which other runs are shown beside it. The Examples page runs it
as a background job (``engine.jobs.JobManager.submit_examples``). Images come back as numpy arrays ready to draw: (H, W) for
grayscale, (H, W, 3) for colour, values in [0, 1].
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

from .attacks import ATTACKS, build_attack, single_run_params, validate_budget
from .data import load_dataset
from .objectives import ConfigError
from .rng import private_rng
from .train import load_run

MAX_IMAGES = 32  # a gallery is for looking at; more images belong to the robustness sweep
DEFAULT_IMAGES = 5


def default_indices(labels: torch.Tensor, count: int) -> list[int]:
    """``count`` test indices from different classes: the first image of class 0, 1, 2, …; past the
    last class, the second image of each class, and so on."""
    labels = labels.cpu()
    by_class = [torch.nonzero(labels == c).flatten().tolist() for c in range(int(labels.max()) + 1)]
    picked: list[int] = []
    rank = 0
    while len(picked) < count and any(rank < len(members) for members in by_class):
        picked += [members[rank] for members in by_class if rank < len(members)][:count - len(picked)]
        rank += 1
    return picked


def amplify(perturbation: np.ndarray) -> np.ndarray:
    """A perturbation stretched to the full display range: δ / (2·max|δ|) + ½, so mid-grey is no
    change and black / white are the largest decrease / increase in this image (max|δ| is at most ε
    for an ℓ∞ attack; an all-zero δ stays mid-grey). Colour images are scaled by one factor over all channels, so the
    hue of a pixel's change is kept."""
    largest = float(np.abs(perturbation).max())
    if largest == 0.0:
        return np.full_like(perturbation, 0.5)
    return (perturbation / (2.0 * largest) + 0.5).clip(0.0, 1.0)


def upscale(image: np.ndarray, size: int = 112) -> np.ndarray:
    """The image enlarged by an integer factor with nearest neighbour (each pixel a block), so 8×8
    digits stay crisp: browsers smooth small images when they enlarge them."""
    factor = max(1, size // image.shape[0])
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def _to_numpy_image(x: torch.Tensor) -> np.ndarray:
    """(C, H, W) tensor -> (H, W) for one channel, (H, W, C) otherwise, float32."""
    array = x.detach().cpu().float().numpy()
    return array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)


def _checked_budget(attack: str, eps: Any) -> float | None:
    """The attack's budget (an ℓ∞ ε, a noise σ, an angle, …: ``engine.attacks.BUDGETS``) checked
    against its range; None for a minimal attack (DeepFool, C&W), which has none."""
    if ATTACKS[attack].budget == "none":
        return None
    return validate_budget(attack, [eps])[0]


def _checked_indices(indices: int | Sequence[int], labels: torch.Tensor) -> list[int]:
    n = len(labels)
    if isinstance(indices, (int, np.integer)) and not isinstance(indices, bool):
        if not 1 <= indices <= MAX_IMAGES:
            raise ConfigError(f"images: the number of images must be between 1 and {MAX_IMAGES}; got {indices}")
        return default_indices(labels, int(indices))
    chosen = list(indices)
    if not chosen:
        raise ConfigError("images: choose at least one test index")
    if len(chosen) > MAX_IMAGES:
        raise ConfigError(f"images: at most {MAX_IMAGES} images at a time; got {len(chosen)}")
    bad = [i for i in chosen if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < n]
    if bad:
        raise ConfigError(f"images: test indices must be whole numbers from 0 to {n - 1}; got {bad[0]!r}")
    return [int(i) for i in chosen]


def parse_indices(text: str) -> list[int]:
    """Test indices typed as "3, 17 42" (commas or spaces) -> [3, 17, 42]."""
    parts = [p for p in text.replace(",", " ").split() if p]
    if not parts:
        raise ConfigError("images: type at least one test index (e.g. 0, 17, 42)")
    try:
        return [int(p) for p in parts]
    except ValueError:
        bad = next(p for p in parts if not p.lstrip("-").isdigit())
        raise ConfigError(f"images: test indices must be whole numbers separated by commas; got {bad!r}") from None


@torch.no_grad()
def predict(model, objective, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The run's predictions (its own test decision rule) and the softmax of its logits at them."""
    z = model(x)
    pred = objective.test_predictions(model, x, z)
    confidence = torch.softmax(objective.logits(z).float(), dim=1).gather(1, pred[:, None])[:, 0]
    return pred, confidence


def adversarial_examples(store, run_ids: Sequence[str], attack: str, eps: float | None, params: dict[str, Any] | None = None,
                         indices: int | Sequence[int] = DEFAULT_IMAGES, data_dir=None, seed: int = 0,
                         device: str | torch.device = "cpu", cancel=None,
                         on_event: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """The gallery of ``attack`` at ``eps`` against each of ``run_ids`` (stored runs of one dataset).
    ``eps`` is the attack's budget in its own unit (``engine.attacks.budget_of``: an ℓ∞ radius for
    most, a noise σ, a rotation angle, SimBA's ℓ2 step); minimal attacks (DeepFool, C&W) ignore it
    and the gallery's eps is then None.

    ``indices``: test-split indices, or a count of images taken from different classes
    (``default_indices``). ``params``: the attack's parameters (validated here; defaults filled in).
    Every run is attacked from the same seeded random state (``seed``), in a stream of its own.

    ``device``: where the runs are attacked. ``cancel`` (a threading.Event) is checked before each run
    (InterruptedError("cancelled") when set). ``on_event`` receives the job events of the evaluations
    (``engine.jobs.Job.publish``): ``sweep-start`` (a point per run), ``sweep-progress`` and ``point``
    ({run_id, objective, fooled, images}) after each run.

    Returns a dict: dataset, class_names, attack, eps, params (validated), seed, runs (a list of
    {run_id, objective}) and images, one per index: {index, label, clean, runs: {run_id: {adversarial,
    perturbation (x_adv − x), perturbation_display (``amplify``), linf, clean_pred, clean_conf,
    adv_pred, adv_conf}}}. Raises ConfigError naming the field for bad input.
    """
    if not run_ids:
        raise ConfigError("runs: choose at least one stored run")
    values = single_run_params(attack, dict(params or {}), "the gallery")
    eps = _checked_budget(attack, eps)
    records = {}
    for run_id in run_ids:
        try:
            records[run_id] = store.get_run(run_id)
        except KeyError:
            raise ConfigError(f"runs: no stored run {run_id!r}") from None
    datasets = sorted({r["dataset"] for r in records.values()})
    if len(datasets) > 1:
        raise ConfigError(f"runs: all chosen runs must be on one dataset; got {', '.join(datasets)}")
    data = load_dataset(datasets[0], data_dir=data_dir)
    chosen = _checked_indices(indices, data.y_test)
    x, y = data.x_test[chosen], data.y_test[chosen]

    emit = on_event or (lambda event: None)
    device = torch.device(device)
    x, y = x.to(device), y.to(device)
    emit({"type": "sweep-start", "runs": [{"run_id": r, "objective": records[r]["objective"]} for r in run_ids],
          "points": len(run_ids), "class_names": list(data.class_names)})
    per_run: dict[str, dict[str, Any]] = {}
    for done, run_id in enumerate(run_ids, start=1):
        if cancel is not None and cancel.is_set():
            raise InterruptedError("cancelled")
        with private_rng(int(seed)):  # building the model draws its (overwritten) initial weights: not from
            model, objective, _ = load_run(store, run_id, device)  # a training member's stream
        if eps == 0:  # no budget: the clean images (a minimal attack, eps None, always runs)
            x_adv = x.clone()
        else:
            atk = build_attack(attack, model, objective, eps or 0.0, **values)
            if hasattr(atk, "seed"):  # torchattacks' APGD, FAB, Square reseed torch from their own seed
                atk.seed = int(seed)
            with private_rng(int(seed), device):  # the same start for every run, in a stream of its own
                x_adv = atk(x, y).detach()
        clean_pred, clean_conf = predict(model, objective, x)
        adv_pred, adv_conf = predict(model, objective, x_adv)
        per_run[run_id] = {"x_adv": x_adv.cpu(), "clean_pred": clean_pred.cpu(), "clean_conf": clean_conf.cpu(),
                           "adv_pred": adv_pred.cpu(), "adv_conf": adv_conf.cpu()}
        emit({"type": "sweep-progress", "done": done, "total": len(run_ids), "eta": None})
        emit({"type": "point", "result": {"run_id": run_id, "objective": records[run_id]["objective"],
                                          "fooled": int((adv_pred != y).sum()), "images": len(y)}})
    x, y = x.cpu(), y.cpu()

    images = []
    for i, index in enumerate(chosen):
        entry = {"index": index, "label": int(y[i]), "clean": _to_numpy_image(x[i]), "runs": {}}
        for run_id, out in per_run.items():
            delta = _to_numpy_image(out["x_adv"][i] - x[i])
            entry["runs"][run_id] = {
                "adversarial": _to_numpy_image(out["x_adv"][i]),
                "perturbation": delta,
                "perturbation_display": amplify(delta),
                "linf": float(np.abs(delta).max()),
                "clean_pred": int(out["clean_pred"][i]), "clean_conf": float(out["clean_conf"][i]),
                "adv_pred": int(out["adv_pred"][i]), "adv_conf": float(out["adv_conf"][i]),
            }
        images.append(entry)
    return {"dataset": datasets[0], "class_names": list(data.class_names), "attack": attack, "eps": eps,
            "params": values, "seed": seed,
            "runs": [{"run_id": r, "objective": records[r]["objective"]} for r in run_ids],
            "images": images}


def gallery_rows(gallery: dict[str, Any]) -> list[dict[str, Any]]:
    """The gallery's numbers as table rows (one per image and run), for export."""
    names = gallery["class_names"]
    objective = {r["run_id"]: r["objective"] for r in gallery["runs"]}
    return [{"index": image["index"], "label": names[image["label"]], "run_id": run_id,
             "objective": objective[run_id], "attack": gallery["attack"], "eps": gallery["eps"],
             "clean_pred": names[out["clean_pred"]], "clean_conf": out["clean_conf"],
             "adv_pred": names[out["adv_pred"]], "adv_conf": out["adv_conf"], "linf": out["linf"]}
            for image in gallery["images"] for run_id, out in image["runs"].items()]
