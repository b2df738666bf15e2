"""The test samples behind a stored run's latent points: for each point of the run's fixed latent
subset (``engine.train.fixed_subset``, the points the latent views draw), its test index, its image as
a small PNG data URL, its true class and the run's prediction by its final checkpoint.

The Latent space page shows these in the hover of its views, so a point can be looked at as the
image it is (why is this 4 sitting among the 9s?). Images are PNG data URLs because a Vega-Lite
tooltip shows an image from a URL held in a field named ``image``, and a data URL needs no server.
"""
from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import torch
from PIL import Image

from .data import load_dataset
from .examples import predict, upscale
from .objectives import ConfigError
from .rng import private_rng
from .train import load_run

HOVER_IMAGE_PX = 56  # an 8×8 digit at 7× and a 28×28 image at 2×: large enough to read in a tooltip
PREDICT_BATCH = 500  # images classified at once: bounded, so a ResNet on 1,000 CIFAR images stays small


def png_data_url(image: np.ndarray, size: int = HOVER_IMAGE_PX) -> str:
    """An image with values in [0, 1], (H, W) grayscale or (H, W, 3) colour, as a ``data:image/png``
    URL, enlarged by an integer factor with nearest neighbour (``engine.examples.upscale``) to about
    ``size`` pixels: browsers smooth a small image they enlarge, which blurs an 8×8 digit to a smudge."""
    pixels = np.round(np.clip(upscale(np.asarray(image, dtype=np.float32), size), 0.0, 1.0) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", optimize=True)  # uint8 (H, W): mode L; (H, W, 3): RGB
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def latent_samples(store, run_id: str, size: int = HOVER_IMAGE_PX, data_dir=None,
                   device: str | torch.device = "cpu") -> dict[str, Any]:
    """The samples behind ``run_id``'s stored latent points, in the order of its stored latents.

    Returns a dict: run_id, dataset, class_names, epoch (the final epoch: the checkpoint the
    predictions come from), indices (test-split indices, (n,)), labels (true classes, (n,)),
    predictions (the run's own test decision rule, ``objective.test_predictions``, (n,)),
    confidence (softmax of its logits at the prediction, (n,)) and images (PNG data URLs,
    ``png_data_url`` at ``size``). Raises ConfigError for an unknown run or a run stored without the
    test indices of its latents, and ``engine.data.DatasetUnavailable`` when its dataset is not on
    this machine.
    """
    if not store.has_run(run_id):
        raise ConfigError(f"runs: no stored run {run_id!r}; `python -m engine runs` lists them")
    latents = store.get_latents(run_id)
    if "indices" not in latents:
        raise ConfigError(f"run {run_id}: its stored latents do not name their test samples (no indices)")
    indices = np.asarray(latents["indices"], dtype=np.int64)
    with private_rng(0, device):  # building the model draws its (overwritten) initial weights: not from
        model, objective, record = load_run(store, run_id, device)  # any running job's stream
    data = load_dataset(record["dataset"], data_dir=data_dir)
    x = data.x_test[torch.from_numpy(indices)]
    pixels = x.numpy()  # (n, C, H, W) -> (n, H, W) for one channel, (n, H, W, C) for colour
    pixels = pixels[:, 0] if pixels.shape[1] == 1 else pixels.transpose(0, 2, 3, 1)
    predictions, confidence = [], []
    for start in range(0, len(x), PREDICT_BATCH):
        pred, conf = predict(model, objective, x[start:start + PREDICT_BATCH].to(device))
        predictions.append(pred.cpu())
        confidence.append(conf.cpu())
    return {
        "run_id": run_id, "dataset": record["dataset"], "class_names": list(data.class_names),
        "epoch": record["history"][-1]["epoch"], "indices": indices,
        "labels": data.y_test[torch.from_numpy(indices)].numpy(),
        "predictions": torch.cat(predictions).numpy() if predictions else np.zeros(0, np.int64),
        "confidence": torch.cat(confidence).float().numpy() if confidence else np.zeros(0, np.float32),
        "images": [png_data_url(image, size) for image in pixels],
    }
