"""The adversarial-examples gallery against real (tiny) runs on digits."""
import numpy as np
import pytest
import torch

from engine.config import ObjectiveSpec, TrainConfig
from engine.attacks import attack_params
from engine.data import load_dataset
from engine.examples import (MAX_IMAGES, adversarial_examples, amplify, default_indices, gallery_rows,
                             parse_indices, upscale)
from engine.objectives import ConfigError
from engine.train import load_run, train_job


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from cache import RunStore

    store = RunStore(tmp_path_factory.mktemp("examples-store"))
    records = train_job(TrainConfig(epochs=4, device="cpu", latent_samples=50,
                                    objectives=(ObjectiveSpec("ce"), ObjectiveSpec("gccs"))), store)
    yield store, [r["run_id"] for r in records]
    store.close()


def test_default_images_come_from_different_classes():
    labels = load_dataset("digits").y_test
    picked = default_indices(labels, 12)
    assert [int(labels[i]) for i in picked] == list(range(10)) + [0, 1]
    assert len(set(picked)) == 12 and picked[10] > picked[0]  # past the last class: the second image of class 0


def test_gallery_stays_in_the_ball_and_the_image_range(runs):
    store, run_ids = runs
    gallery = adversarial_examples(store, run_ids, "pgd", 0.1, {"steps": 5}, 4)
    assert gallery["params"] == attack_params("pgd", {"steps": 5}) and gallery["eps"] == 0.1  # defaults filled in
    assert [r["objective"] for r in gallery["runs"]] == ["ce", "gccs"]
    assert len(gallery["images"]) == 4
    for image in gallery["images"]:
        assert image["clean"].shape == (8, 8)
        for out in image["runs"].values():
            adv, delta, shown = out["adversarial"], out["perturbation"], out["perturbation_display"]
            assert np.abs(delta).max() <= 0.1 + 1e-6 and out["linf"] == pytest.approx(np.abs(delta).max())
            assert np.allclose(adv - image["clean"], delta, atol=1e-6)
            for array in (image["clean"], adv, shown):
                assert array.min() >= 0.0 and array.max() <= 1.0
            assert shown.max() == pytest.approx(1.0) or shown.min() == pytest.approx(0.0)  # amplified to full range
            assert 0.0 < out["clean_conf"] <= 1.0 and 0.0 < out["adv_conf"] <= 1.0


def test_predictions_and_confidence_are_those_of_the_stored_model(runs):
    store, run_ids = runs
    indices = [3, 100, 200]
    gallery = adversarial_examples(store, run_ids, "fgsm", 0.2, {}, indices)
    x = load_dataset("digits").x_test[indices]
    for run_id in run_ids:
        model, objective, _ = load_run(store, run_id)
        with torch.no_grad():
            z = model(x)
            pred = objective.test_predictions(model, x, z)
            conf = torch.softmax(objective.logits(z), 1).max(1).values
            adv = torch.stack([torch.from_numpy(im["runs"][run_id]["adversarial"])[None] for im in gallery["images"]])
            adv_pred = objective.test_predictions(model, adv, model(adv))
        assert [im["index"] for im in gallery["images"]] == indices
        assert [im["runs"][run_id]["clean_pred"] for im in gallery["images"]] == pred.tolist()
        assert [im["runs"][run_id]["clean_conf"] for im in gallery["images"]] == pytest.approx(conf.tolist(), abs=1e-6)
        assert [im["runs"][run_id]["adv_pred"] for im in gallery["images"]] == adv_pred.tolist()


def test_gallery_is_reproducible_and_independent_of_the_other_runs(runs):
    store, run_ids = runs
    both = adversarial_examples(store, run_ids, "pgd", 0.2, {}, 3, seed=4)
    again = adversarial_examples(store, run_ids[1:], "pgd", 0.2, {}, 3, seed=4)
    for a, b in zip(both["images"], again["images"]):
        assert np.array_equal(a["runs"][run_ids[1]]["adversarial"], b["runs"][run_ids[1]]["adversarial"])
    other_seed = adversarial_examples(store, run_ids[1:], "pgd", 0.2, {}, 3, seed=5)
    assert not all(np.array_equal(a["runs"][run_ids[1]]["adversarial"], b["runs"][run_ids[1]]["adversarial"])
                   for a, b in zip(both["images"], other_seed["images"]))


def test_eps_zero_leaves_the_images_clean(runs):
    store, run_ids = runs
    gallery = adversarial_examples(store, run_ids[:1], "pgd", 0.0, {}, 2)
    out = gallery["images"][0]["runs"][run_ids[0]]
    assert out["linf"] == 0.0 and np.all(out["perturbation_display"] == 0.5)
    assert out["adv_pred"] == out["clean_pred"]


def test_minimal_and_natural_attacks_use_their_own_budget(runs):
    store, run_ids = runs
    # DeepFool has no budget: eps is ignored, and it still perturbs
    deepfool = adversarial_examples(store, run_ids[:1], "deepfool", None, {}, 2)
    assert deepfool["eps"] is None and deepfool["images"][0]["runs"][run_ids[0]]["linf"] > 0
    # a rotation by up to 30 degrees: far beyond an ℓ∞ ε of 1 is allowed, and images stay in [0, 1]
    rotated = adversarial_examples(store, run_ids[:1], "rotation", 30, {}, 2)
    out = rotated["images"][0]["runs"][run_ids[0]]
    assert rotated["eps"] == 30.0 and out["linf"] > 0 and 0 <= out["adversarial"].min() <= out["adversarial"].max() <= 1


def test_gallery_rows_name_classes_and_runs(runs):
    store, run_ids = runs
    gallery = adversarial_examples(store, run_ids, "fgsm", 0.1, {}, [5])
    rows = gallery_rows(gallery)
    assert [r["objective"] for r in rows] == ["ce", "gccs"]
    assert rows[0]["label"] == gallery["class_names"][gallery["images"][0]["label"]] and rows[0]["eps"] == 0.1


@pytest.mark.parametrize("kwargs, message", [
    ({"run_ids": []}, "runs: choose at least one stored run"),
    ({"run_ids": ["nope"]}, "runs: no stored run 'nope'"),
    ({"attack": "deepfake"}, "attack must be one of"),
    ({"params": {"steps": 0}}, "pgd.steps must be ≥ 1"),
    ({"params": {"radius": 1}}, "unknown parameter 'radius' for attack 'pgd'"),
    ({"eps": 1.5}, r"eps must be numbers in \[0, 1\] .* for attack pgd; got \[1.5\]"),
    ({"eps": "much"}, r"eps must be numbers in \[0, 1\]"),
    ({"attack": "rotation", "eps": 200}, r"eps must be numbers in \[0, 180\] \(degrees\)"),
    ({"indices": [0, 450]}, "images: test indices must be whole numbers from 0 to 449; got 450"),
    ({"indices": [-1]}, "from 0 to 449; got -1"),
    ({"indices": 0}, f"between 1 and {MAX_IMAGES}"),
    ({"indices": []}, "choose at least one test index"),
])
def test_bad_input_names_the_field(runs, kwargs, message):
    store, run_ids = runs
    settings = {"run_ids": run_ids[:1], "attack": "pgd", "eps": 0.1, "params": {}, "indices": 2, **kwargs}
    with pytest.raises(ConfigError, match=message):
        adversarial_examples(store, **settings)


def test_typed_indices_and_display_helpers():
    assert parse_indices("3, 17 42,") == [3, 17, 42]
    with pytest.raises(ConfigError, match="whole numbers separated by commas; got '1.5'"):
        parse_indices("0, 1.5")
    with pytest.raises(ConfigError, match="at least one test index"):
        parse_indices(" , ")
    delta = np.array([[-0.05, 0.0], [0.1, 0.025]], dtype=np.float32)
    np.testing.assert_allclose(amplify(delta), [[0.25, 0.5], [1.0, 0.625]], rtol=1e-6)
    big = upscale(np.arange(4, dtype=np.float32).reshape(2, 2), size=8)
    assert big.shape == (8, 8) and big[:4, :4].tolist() == [[0.0] * 4] * 4 and big[7, 7] == 3.0
    assert upscale(np.zeros((32, 32, 3)), size=112).shape == (96, 96, 3)


def test_gallery_leaves_the_global_generator_alone(runs):
    store, run_ids = runs
    torch.manual_seed(123)
    before = torch.get_rng_state()
    adversarial_examples(store, run_ids, "pgd", 0.2, {}, 3, seed=4)
    assert torch.equal(torch.get_rng_state(), before)  # seeded inside private_rng only, and restored


def test_gallery_runs_as_a_job_with_progress_and_cancel(runs):
    import threading

    from engine.jobs import CANCELLED, DONE, FAILED, JobManager

    store, run_ids = runs
    manager = JobManager(store=store)
    job = manager.wait(manager.submit_examples(run_ids, "pgd", 0.2, {}, 3, seed=4), 120)
    assert job.status == DONE and job.kind == "examples" and job.progress == 1.0
    assert [p["run_id"] for p in job.points] == run_ids and all(p["images"] == 3 for p in job.points)
    direct = adversarial_examples(store, run_ids, "pgd", 0.2, {}, 3, seed=4)
    for a, b in zip(job.result["images"], direct["images"]):
        for run_id in run_ids:
            assert np.array_equal(a["runs"][run_id]["adversarial"], b["runs"][run_id]["adversarial"])
    # settings fail in the caller, test indices in the job (they need the dataset)
    with pytest.raises(ConfigError, match="pgd.steps must be ≥ 1"):
        manager.submit_examples(run_ids, "pgd", 0.1, {"steps": 0})
    with pytest.raises(ConfigError, match="runs: no stored run 'nope'"):
        manager.submit_examples(["nope"], "pgd", 0.1)
    failed = manager.wait(manager.submit_examples(run_ids, "pgd", 0.1, {}, [4500]), 60)
    assert failed.status == FAILED and "from 0 to 449; got 4500" in failed.error
    # cancel between runs
    cancel, seen = threading.Event(), []

    def on_event(event):
        seen.append(event["type"])
        if event["type"] == "point":
            cancel.set()

    with pytest.raises(InterruptedError, match="cancelled"):
        adversarial_examples(store, run_ids, "pgd", 0.1, {}, 2, cancel=cancel, on_event=on_event)
    assert seen == ["sweep-start", "sweep-progress", "point"]
    minimal = manager.submit_examples(run_ids, "deepfool", 0.3)  # a minimal attack ignores ε
    queued = manager.submit_examples(run_ids, "pgd", 0.1, {}, 2)
    manager.cancel(queued)
    assert manager.wait(queued, 120).status in (CANCELLED, DONE)
    # no job left running into the next tests (it would draw from torch's shared random state)
    assert manager.wait(minimal, 120).status == DONE


def test_latent_samples_are_the_stored_latent_points_with_their_images_labels_and_final_predictions(runs):
    import base64
    import io

    from PIL import Image

    from engine.latent_samples import latent_samples

    store, run_ids = runs
    x_test = load_dataset("digits").x_test
    for run_id in run_ids:
        record, latents = store.get_run(run_id), store.get_latents(run_id)
        samples = latent_samples(store, run_id)
        assert np.array_equal(samples["indices"], latents["indices"]) and len(samples["indices"]) == 50
        assert np.array_equal(samples["labels"], latents["y"])
        assert samples["epoch"] == 4 and samples["class_names"] == [str(d) for d in range(10)]
        # the images are those of the drawn points: the final model maps them onto the stored final latents
        model, objective, _ = load_run(store, run_id)
        x = x_test[torch.from_numpy(samples["indices"])]
        with torch.no_grad():
            z = model(x)
            expected = objective.test_predictions(model, x, z)
        assert np.allclose(z.numpy(), np.asarray(latents["z"], np.float32), rtol=1e-3, atol=1e-2)  # stored as fp16
        assert np.array_equal(samples["predictions"], expected.numpy())
        assert ((samples["confidence"] > 0) & (samples["confidence"] <= 1)).all()
        # on these 50 points the run is as accurate as on the whole test split, within binomial noise
        accuracy, final = (samples["predictions"] == samples["labels"]).mean(), record["final"]["test_acc"]
        assert abs(accuracy - final) <= 4 * np.sqrt(final * (1 - final) / 50) + 0.02
        # each image: a 56 × 56 grayscale PNG of its 8 × 8 digit, every pixel a 7 × 7 block
        for url, image in zip(samples["images"], x):
            assert url.startswith("data:image/png;base64,")
            png = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
            assert png.format == "PNG" and png.mode == "L" and png.size == (56, 56)
            pixels = np.asarray(png)
            assert np.array_equal(pixels[::7, ::7], np.round(image[0].numpy() * 255).astype(np.uint8))
            assert np.array_equal(pixels, np.repeat(np.repeat(pixels[::7, ::7], 7, axis=0), 7, axis=1))
    with pytest.raises(ConfigError, match="no stored run 'nope'"):
        latent_samples(store, "nope")


def test_hover_png_keeps_colour_and_enlarges_by_whole_factors():
    import base64
    import io

    from PIL import Image

    from engine.latent_samples import png_data_url

    def decoded(url):
        return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))

    colour = np.zeros((32, 32, 3), np.float32)
    colour[..., 0] = 1.0  # pure red
    png = decoded(png_data_url(colour))
    assert png.mode == "RGB" and png.size == (32, 32) and png.getpixel((5, 5)) == (255, 0, 0)  # 56 // 32 = 1×
    assert decoded(png_data_url(np.full((28, 28), 0.5, np.float32))).size == (56, 56)  # Fashion-MNIST at 2×
