"""On-device augmentation: each image a shifted (and maybe mirrored) copy of itself, seeded, and
applied to training batches only."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.augment import PAD, augment_batch, resolve
from engine.config import ObjectiveSpec, TrainConfig
from engine.data import load_dataset
from engine.train import latents_of, load_run, train_job


def images(b=64, c=3, h=12, w=10, seed=0):
    return torch.rand((b, c, h, w), generator=torch.Generator().manual_seed(seed))


def find_shift(original: torch.Tensor, crop: torch.Tensor):
    """The (dy, dx, mirrored) for which ``crop`` is that window of the zero-padded ``original``."""
    padded = F.pad(original, (PAD, PAD, PAD, PAD))
    h, w = original.shape[1:]
    for mirrored in (False, True):
        for dy in range(2 * PAD + 1):
            for dx in range(2 * PAD + 1):
                window = padded[:, dy:dy + h, dx:dx + w]
                if torch.equal(window.flip(2) if mirrored else window, crop):
                    return dy, dx, mirrored
    return None


@pytest.mark.parametrize("mode", ["crop", "crop-flip"])
def test_every_image_is_a_window_of_itself_padded(mode):
    x = images()
    out = augment_batch(x, mode, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == x.dtype and out.is_contiguous()
    shifts = [find_shift(a, b) for a, b in zip(x, out)]
    assert all(s is not None for s in shifts)
    assert len({s[:2] for s in shifts}) > 20  # offsets spread over the (2·4+1)² possible
    mirrored = sum(s[2] for s in shifts)
    if mode == "crop":
        assert mirrored == 0
    else:
        assert 16 < mirrored < 48  # about half of 64
    assert 0 <= out.min() and out.max() <= 1


def test_seeded_stream_and_none_is_the_identity():
    x = images()
    a = augment_batch(x, "crop-flip", torch.Generator().manual_seed(3))
    assert torch.equal(a, augment_batch(x, "crop-flip", torch.Generator().manual_seed(3)))
    assert not torch.equal(a, augment_batch(x, "crop-flip", torch.Generator().manual_seed(4)))
    assert augment_batch(x, "none", torch.Generator()) is x
    with pytest.raises(ValueError, match="augmentation must be one of"):
        augment_batch(x, "rotate", torch.Generator())
    assert [resolve("auto", d) for d in ("cifar10", "cifar100", "svhn", "mnist", "fashion-mnist", "digits")] == \
        ["crop-flip", "crop-flip", "crop", "none", "none", "none"]
    assert resolve("crop", "mnist") == "crop"


def test_training_with_augmentation_evaluates_on_the_test_images_as_stored(store):
    config = TrainConfig(epochs=3, batch_size=100, latent_samples=100, device="cpu", augment="crop",
                         objectives=(ObjectiveSpec("ce"), ObjectiveSpec("gccs")))
    augmented = train_job(config, store)
    plain = train_job(config.with_(augment="none"), store)
    data = load_dataset("digits")
    for a, p in zip(augmented, plain):
        assert a["run_id"] != p["run_id"] and a["history"] != p["history"]
        model, objective, record = load_run(store, a["run_id"])
        z = latents_of(model, data.x_test)  # the clean test images: the stored accuracy is theirs
        acc = float((objective.predict(z) == data.y_test).float().mean())
        assert acc == pytest.approx(record["final"]["test_acc"], abs=1e-6)
    # lockstep members saw the same augmented batches: a member trained alone is the same run
    (alone,) = train_job(config.with_(objectives=(ObjectiveSpec("gccs"),)), None)
    assert np.allclose([h["loss"]["loss"] for h in alone["history"]],
                       [h["loss"]["loss"] for h in augmented[1]["history"]], rtol=1e-5)
