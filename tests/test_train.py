"""The training loop, the store and the job manager, on the real embedded dataset."""
import threading
import time

import numpy as np
import pytest
import torch

from engine.config import ObjectiveSpec, TrainConfig, preset
from engine.metrics import macro_f1
from engine.jobs import CANCELLED, DONE, FAILED, JobManager
from engine.objectives import ConfigError
from engine.train import Cancelled, TrainingFailed, epoch_batches, load_run, train_job, latents_of
from engine.data import load_dataset

TINY = dict(dataset="digits", model="cnn", epochs=2, batch_size=100, latent_samples=200, device="cpu")


def tiny(*objectives, **overrides) -> TrainConfig:
    return TrainConfig.from_dict({**TINY, "objectives": tuple(ObjectiveSpec(o) for o in objectives), **overrides})


def keys(store):
    return store.keys()


def test_run_id_is_stable_and_ignores_companions_and_device():
    a = tiny("ce", "gccs")
    b = tiny("gccs", device="auto")
    assert a.run_id(a.objectives[1]) == b.run_id(b.objectives[0])
    assert a.run_id(a.objectives[0]) != a.run_id(a.objectives[1])
    assert tiny("gccs", seed=1).run_id(ObjectiveSpec("gccs")) != b.run_id(b.objectives[0])
    # constants are filled with their defaults before hashing: explicit default == implicit
    explicit = tiny("gccs").with_(objectives=(ObjectiveSpec("gccs", {"mu_t": 70}),))
    assert explicit.run_id(explicit.objectives[0]) == b.run_id(b.objectives[0])


@pytest.mark.parametrize("field, value, words", [
    ("dataset", "imagenet", ["dataset", "digits", "cifar100"]), ("model", "vgg", ["model", "resnet18"]),
    ("optimizer", "lbfgs", ["optimizer", "sgd, adam"]), ("epochs", 0, ["epochs", "≥ 1"]),
    ("lr", -1, ["lr"]), ("batch_size", 1.5, ["batch_size", "integer"]), ("dropout", 1.0, ["dropout"]),
    ("sampler", "weighted", ["sampler", "random, balanced"]), ("device", "tpu", ["device", "auto, cpu, cuda"])])
def test_bad_settings_name_the_field_and_allowed_values(field, value, words):
    with pytest.raises(ConfigError) as err:
        tiny("ce", **{field: value})
    for word in words:
        assert word in str(err.value)


def test_objectives_must_be_known_and_unique():
    with pytest.raises(ConfigError, match="objective must be one of ce, gccs"):
        tiny("softmax")
    with pytest.raises(ConfigError, match="once"):
        tiny("ce", "ce")


def test_balanced_sampler_spreads_every_class_evenly():
    y = load_dataset("digits").y_train
    batches = epoch_batches(y, 200, "balanced", torch.Generator().manual_seed(0), 10)
    share = torch.bincount(y, minlength=10).double() / len(y)
    for b in batches:
        counts = torch.bincount(y[b], minlength=10).double()
        assert (counts - 200 * share).abs().max() <= 2.0
    assert len(torch.unique(batches)) == batches.numel()  # a permutation: no sample twice
    rand = epoch_batches(y, 200, "random", torch.Generator().manual_seed(0), 10)
    assert rand.shape == batches.shape == (len(y) // 200, 200)


def test_lockstep_member_equals_the_same_run_trained_alone():
    """A run's weights do not depend on which objectives share its job (same batches, own RNG)."""
    together = train_job(tiny("gccs", "ce", dropout=0.3))
    alone = train_job(tiny("ce", dropout=0.3))
    assert together[1]["run_id"] == alone[0]["run_id"]
    assert together[1]["history"][-1]["test_acc"] == alone[0]["history"][-1]["test_acc"]
    assert together[1]["history"][-1]["loss"] == alone[0]["history"][-1]["loss"]


def test_training_publishes_every_epoch_and_stores_a_loadable_run(store):
    events = []
    records = train_job(tiny("ce", "gccs"), store, on_event=events.append)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "start" and kinds.count("epoch") == 2 * 2
    assert kinds.count("progress") == 2 * (1347 // 100)
    epoch = next(e for e in events if e["type"] == "epoch" and e["objective"] == "gccs")
    m = epoch["metrics"]
    for key in ("loss", "train_acc", "test_acc", "test_f1", "samples_per_s", "time", "r_ab", "kurtosis"):
        assert key in m
    assert set(m["loss"]) == {"loss", "kl", "kurtosis"}
    assert epoch["latents"].shape == (200, 10) and epoch["labels"].shape == (200,)
    assert np.array_equal(epoch["geometry"], 70 * np.eye(10))

    for record in records:
        assert store.has_run(record["run_id"])
        model, objective, stored = load_run(store, record["run_id"])
        data = load_dataset("digits")
        z = latents_of(model, data.x_test)
        acc = float((objective.predict(z) == data.y_test).float().mean())
        assert acc == pytest.approx(stored["final"]["test_acc"], abs=1e-6)
        assert macro_f1(objective.predict(z), data.y_test, 10) == pytest.approx(stored["final"]["test_f1"], abs=1e-6)
        latents = store.get_latents(record["run_id"])
        assert latents["z"].shape == (200, 10) and [e for e, _ in latents["snapshots"]] == [1, 2]
    assert [r["run_id"] for r in store.list_runs()]  # listed


def test_identical_settings_reuse_the_stored_run_unless_forced(store):
    first = train_job(tiny("ce"), store)
    events = []
    again = train_job(tiny("ce"), store, on_event=events.append)
    assert [e["type"] for e in events] == ["start", "reused"]
    assert again[0]["created"] == first[0]["created"]
    forced = train_job(tiny("ce"), store, force=True)
    assert forced[0]["created"] > first[0]["created"]
    # a comparison with one stored and one new member trains only the new one
    events.clear()
    train_job(tiny("ce", "gccs"), store, on_event=events.append)
    assert {e["objective"] for e in events if e["type"] == "epoch"} == {"gccs"}


def test_non_finite_loss_fails_with_its_reason_and_leaves_the_store_intact(store):
    train_job(tiny("ce"), store)
    before = keys(store)
    config = tiny("ce", "gccs").with_(objectives=(ObjectiveSpec("ce"), ObjectiveSpec("gccs", {"mu_t": 1e30})))
    with pytest.raises(TrainingFailed, match=r"objective gccs: the training loss part '\w+' became (nan|inf)"):
        train_job(config, store)
    assert keys(store) == before


def test_cancel_stops_within_one_step_and_stores_nothing(store):
    cancel = threading.Event()
    steps_after_cancel = []

    def on_event(event):
        if event["type"] == "progress":
            if cancel.is_set():
                steps_after_cancel.append(event["done_steps"])
            if event["done_steps"] == 3:
                cancel.set()

    with pytest.raises(Cancelled):
        train_job(tiny("ce", "gccs", epochs=50), store, on_event=on_event, cancel=cancel)
    assert steps_after_cancel == []  # the step in flight finished; no further step started
    assert keys(store) == []


def test_batch_larger_than_the_data_is_refused_before_anything_runs():
    with pytest.raises(ConfigError, match=r"batch size \(batch_size\) must be at most the 1,347 training images"):
        train_job(tiny("ce", batch_size=5000))


def test_job_manager_runs_queues_fails_and_cancels(store):
    manager = JobManager(store=store)
    ok = manager.submit_training(tiny("ce"))
    queued = manager.submit_training(tiny("gccs", epochs=200))
    bad = manager.submit_training(tiny("gccs", epochs=3).with_(objectives=(ObjectiveSpec("gccs", {"mu_t": 1e30}),)))
    job = manager.wait(ok, timeout=120)
    assert job.status == DONE and job.progress == 1.0 and len(job.history[job.runs[0]["run_id"]]) == 2
    assert job.result[0]["run_id"] == job.runs[0]["run_id"]
    manager.cancel(queued)
    assert manager.wait(queued, timeout=120).status == CANCELLED
    failed = manager.wait(bad, timeout=120)
    assert failed.status == FAILED and "became" in failed.error and "gccs" in failed.error
    assert [j.id for j in manager.list()] == [bad, queued, ok]
    with pytest.raises(ConfigError):  # bad settings fail at submission, in the caller
        manager.submit_training(TrainConfig(epochs=0))
    # the worker survived the failure
    again = manager.submit_training(tiny("ce", seed=3))
    assert manager.wait(again, timeout=120).status == DONE


def test_old_finished_jobs_are_released_and_still_read(store):
    manager = JobManager(store=store, keep_finished=2)
    ids = [manager.submit_training(tiny("ce", epochs=1, seed=s)) for s in range(3)]
    ids.append(manager.submit("evaluation", "a failing one", "cpu", {}, lambda job: 1 / 0))
    for job_id in ids:
        manager.wait(job_id, timeout=120)
    jobs = {j: manager.get(j) for j in ids}
    assert [jobs[j].released for j in ids] == [True, True, False, False]
    oldest = jobs[ids[0]]
    assert oldest.status == DONE and oldest.history == {} and oldest.latents == {} and oldest.result is None
    assert oldest.runs and store.has_run(oldest.runs[0]["run_id"])  # what it computed is in the store
    kept = jobs[ids[2]]
    assert kept.history[kept.runs[0]["run_id"]] and kept.result
    assert jobs[ids[3]].status == FAILED and "ZeroDivisionError" in jobs[ids[3]].error


def test_cancel_of_a_running_job(store):
    manager = JobManager(store=store)
    job_id = manager.submit_training(tiny("gccs", epochs=500))
    while manager.get(job_id).step == 0:
        time.sleep(0.01)
    manager.cancel(job_id)
    job = manager.wait(job_id, timeout=60)
    assert job.status == CANCELLED and job.epoch < 500 and not store.has_run(job.runs[0]["run_id"])


def test_checkpoints_load_with_weights_only(store):
    (record,) = train_job(tiny("gccs", epochs=1), store)
    blob = store.checkpoint_bytes(record["run_id"])
    import io
    state = torch.load(io.BytesIO(blob), weights_only=True)
    assert set(state) == {"model", "objective"} and "vertices" in state["objective"]


@pytest.mark.slow
def test_quick_preset_gccs_beats_ce_on_accuracy_and_doubles_r_ab():
    """The issue's acceptance check on the default quick preset (seed 0, 100 epochs, digits, CNN)."""
    ce, gccs = train_job(preset("quick", ("ce", "gccs"), device="cpu"))
    assert gccs["final"]["test_acc"] >= ce["final"]["test_acc"]
    assert gccs["final"]["r_ab"] >= 2 * ce["final"]["r_ab"]
    assert ce["final"]["test_acc"] > 0.95  # CE is trained properly, not starved


def test_a_run_at_chance_is_stored_flagged_listed_and_warned_about(store):
    """lr 10 wrecks CE on digits; the run is kept (it is what those settings give) but marked."""
    from engine.__main__ import run_summary
    from engine.report import runs_table

    healthy, wrecked = train_job(tiny("ce", epochs=1), store)[0], train_job(tiny("ce", lr=10.0, schedule="constant",
                                                                                  epochs=3), store)[0]
    assert healthy["diverged"] is False and healthy["diverged_reason"] is None
    assert wrecked["diverged"] is True and wrecked["final"]["test_acc"] < 0.131
    assert "no better than chance (the most frequent class's 0.102 + 2 standard errors = 0.131 on 450 test images)" \
        in wrecked["diverged_reason"]
    assert any("no better than chance" in w for w in wrecked["warnings"])
    assert store.get_run(wrecked["run_id"])["diverged"] is True
    rows = {r["run_id"]: r for r in runs_table(store, None, None, store.list_runs())}
    assert rows[wrecked["run_id"]]["diverged"] is True and rows[healthy["run_id"]]["diverged"] is False
    assert run_summary(wrecked, reused=False)["diverged"] is True


def test_divergence_names_non_finite_latents_and_uses_the_majority_class_as_chance():
    from engine.train import divergence

    y = torch.tensor([0] * 60 + [1] * 40)  # a constant prediction of class 0 scores 0.6
    z = np.zeros((5, 2), dtype=np.float32)
    assert divergence({"test_acc": 0.65}, y, 2, z) is not None  # 0.6 + 2·√(0.24/100) ≈ 0.698
    assert divergence({"test_acc": 0.75}, y, 2, z) is None
    assert "infinite or NaN" in divergence({"test_acc": 0.99}, y, 2, np.array([[np.inf, 0.0]]))


def test_snapshots_are_thinned_evenly_over_the_whole_run():
    from engine.train import MAX_SNAPSHOTS, compact, thin

    for epochs in (59, 60, 61, 137, 1800):
        kept: list = []
        for epoch in range(1, epochs + 1):
            kept = thin(kept + [(epoch, None)])
        epochs_kept = [e for e, _ in kept]
        assert epochs_kept[0] == 1 and epochs_kept[-1] == epochs and len(epochs_kept) <= MAX_SNAPSHOTS
        gaps = np.diff(epochs_kept[:-1])
        assert len(set(gaps)) <= 1 and (epochs <= MAX_SNAPSHOTS or len(epochs_kept) >= MAX_SNAPSHOTS // 2), epochs_kept
        assert epochs_kept[-1] - epochs_kept[-2] <= (gaps[0] if len(gaps) else 1)
    assert compact(np.ones((2, 2))).dtype == np.float16
    big = compact(np.array([[1e6, 0.0]]))
    assert big.dtype == np.float32 and big[0, 0] == 1e6  # kept, not turned into inf


def test_evaluating_less_often_changes_what_is_watched_not_what_is_trained():
    every, sparse = (train_job(tiny("ce", "gccs", epochs=5, eval_every=k)) for k in (1, 2))
    for a, b in zip(every, sparse):
        assert a["run_id"] == b["run_id"]
        assert [h["epoch"] for h in a["history"]] == [1, 2, 3, 4, 5]
        assert [h["epoch"] for h in b["history"]] == [2, 4, 5]  # and always the last
        assert a["final"]["test_acc"] == b["final"]["test_acc"] and a["final"]["r_ab"] == b["final"]["r_ab"]
        for epoch in (2, 4, 5):
            assert a["history"][epoch - 1]["loss"] == next(h for h in b["history"] if h["epoch"] == epoch)["loss"]


def test_bf16_trains_the_network_in_bf16_and_the_objectives_in_fp32(monkeypatch):
    """Each objective receives fp32 latents from a bf16 network, and a bf16 run reaches the fp32
    run's accuracy on digits within a few points (its own run id: other arithmetic, another run)."""
    from engine.objectives.gccs import GCCS

    seen = []
    original = GCCS.training_loss

    def spy(self, model, x, y):
        out = original(self, model, x, y)
        seen.append((out.z.dtype, torch.is_autocast_enabled("cpu")))
        return out

    monkeypatch.setattr(GCCS, "training_loss", spy)
    fp32 = train_job(tiny("ce", "gccs", epochs=15))
    bf16 = train_job(tiny("ce", "gccs", epochs=15, precision="bf16"))
    assert seen and all(dtype == torch.float32 and not autocast for dtype, autocast in seen)
    for a, b in zip(fp32, bf16):
        assert a["run_id"] != b["run_id"] and b["settings"]["precision"] == "bf16"
        assert b["final"]["test_acc"] > a["final"]["test_acc"] - 0.05, (a["final"]["test_acc"], b["final"]["test_acc"])
        assert a["history"][0]["loss"] != b["history"][0]["loss"]  # it did compute in bf16


def test_channels_last_is_a_layout_not_another_run():
    plain, last = train_job(tiny("ce", epochs=3)), train_job(tiny("ce", epochs=3, channels_last=True))
    assert plain[0]["run_id"] == last[0]["run_id"]
    assert plain[0]["final"]["test_acc"] == pytest.approx(last[0]["final"]["test_acc"], abs=0.02)


@pytest.mark.slow
def test_a_compiled_network_trains_the_same_run():
    """torch.compile of the forward pass (dropout off: compiled dropout draws its masks otherwise).
    Its kernels round differently, so the runs agree closely in the first epoch and drift apart as
    training amplifies the last bits, as a run on another device does."""
    eager = train_job(tiny("ce", "gccs", epochs=3, dropout=0.0))
    compiled = train_job(tiny("ce", "gccs", epochs=3, dropout=0.0, compile=True))
    for a, b in zip(eager, compiled):
        assert a["run_id"] == b["run_id"]
        assert b["history"][0]["loss"]["loss"] == pytest.approx(a["history"][0]["loss"]["loss"], rel=2e-3)
        assert b["final"]["test_acc"] == pytest.approx(a["final"]["test_acc"], abs=0.03)
