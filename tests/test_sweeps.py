"""Sweeps and latent shifts as background work: caching per point, events, cancel, the charts' data,
the cross-attack sanity checks, and the latents under attack, on small runs trained on real digits."""
import threading

import numpy as np
import pytest
import torch

from cache import RunStore
from engine.config import ObjectiveSpec, TrainConfig
from engine.sanity import cross_attack_warnings
from engine.robustness import accuracy_point, load_for_evaluation, validate_eps
from engine.suites import robustness_charts, suite_job, sweep_job
from engine.jobs import CANCELLED, DONE, JobManager
from engine.latent import attacked_latents, cached_shift, shift_job, shift_view
from engine.objectives import ConfigError
from engine.train import Cancelled, fixed_subset, train_job


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    store = RunStore(tmp_path_factory.mktemp("sweep-store"))
    config = TrainConfig(dataset="digits", model="cnn", epochs=10, device="cpu", latent_samples=200,
                         objectives=(ObjectiveSpec("ce"), ObjectiveSpec("gccs")))
    records = train_job(config, store)
    adv = train_job(TrainConfig(dataset="digits", model="cnn", epochs=3, device="cpu", latent_samples=200,
                                adv_attack="fgsm", objectives=(ObjectiveSpec("ce"),)), store)
    return store, [r["run_id"] for r in records], adv[0]["run_id"]


def test_sweep_walks_the_grid_caches_every_point_and_replays_from_the_store(trained):
    store, (ce, gccs), _ = trained
    events = []
    out = sweep_job(store, [ce, gccs], "pgd", {"steps": 3}, [0.1, 0.0, 0.05], samples=100, on_event=events.append)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "sweep-start" and events[0]["points"] == 6 and kinds.count("point") == 6
    points = [e["result"] for e in events if e["type"] == "point"]
    # ε by ε, every run at each ε: the curves advance together
    assert [(p["eps"], p["run_id"]) for p in points] == [(e, r) for e in (0.0, 0.05, 0.1) for r in (ce, gccs)]
    assert all(not e["cached"] for e in events if e["type"] == "point")
    progress = [e["done"] for e in events if e["type"] == "sweep-progress"]
    assert progress == sorted(progress) and progress[-1] == 600
    for run_id in (ce, gccs):
        acc = [p["accuracy"] for p in points if p["run_id"] == run_id]
        assert acc[0] >= acc[1] >= acc[2] and acc[0] > 0.8
        assert out["warnings"][run_id] == []
    assert points[0]["params"] == {"steps": 3, "alpha": 0.0, "restarts": 1} and points[0]["samples"] == 100

    again = []
    replay = sweep_job(store, [ce, gccs], "pgd", {"steps": 3}, [0.0, 0.05, 0.1], samples=100, on_event=again.append)
    assert all(e["cached"] for e in again if e["type"] == "point")
    assert [p["accuracy"] for p in replay["points"]] == [p["accuracy"] for p in points]
    # another seed is another point; the same seed recomputed gives the same number
    loaded, x, y = load_for_evaluation(store, [ce], 100)
    model, objective, _ = loaded[ce]
    fresh, hit = accuracy_point(store, ce, model, objective, x, y, "pgd", {"steps": 3, "alpha": 0.0, "restarts": 1}, 0.1,
                                force=True)
    assert not hit and fresh["accuracy"] == points[4]["accuracy"]
    _, hit = accuracy_point(store, ce, model, objective, x, y, "pgd", {"steps": 3, "alpha": 0.0, "restarts": 1}, 0.1,
                            seed=1)
    assert not hit


def test_a_cancelled_sweep_keeps_the_points_it_finished(trained):
    store, (ce, gccs), _ = trained
    cancel = threading.Event()

    def on_event(event):
        if event["type"] == "point":
            cancel.set()  # stop right after the first point

    with pytest.raises(Cancelled):
        sweep_job(store, [ce, gccs], "fgsm", {}, [0.02, 0.04], samples=150, on_event=on_event, cancel=cancel)
    cached = [r for r in store.list_results(ce, "accuracy") if r["attack"] == "fgsm" and r["samples"] == 150]
    assert [r["eps"] for r in cached] == [0.02]
    assert not [r for r in store.list_results(gccs, "accuracy") if r["attack"] == "fgsm" and r["samples"] == 150]


def test_sweeps_run_as_jobs_with_points_progress_and_validation(trained):
    store, (ce, gccs), _ = trained
    manager = JobManager(store=store)
    job = manager.wait(manager.submit_sweep([ce, gccs], "fgsm", {}, "0, 0.08", samples=120), timeout=120)
    assert job.status == DONE and job.kind == "sweep" and job.progress == 1.0
    assert len(job.points) == 4 and job.detail == "4/4 points"
    with pytest.raises(ConfigError, match="eps must be"):
        manager.submit_sweep([ce], "pgd", {}, "0, 2")
    with pytest.raises(ConfigError, match="eps must be comma-separated numbers"):
        manager.submit_sweep([ce], "pgd", {}, "0, x")
    with pytest.raises(ConfigError, match="pgd.steps"):
        manager.submit_sweep([ce], "pgd", {"steps": 0}, "0")
    failed = manager.wait(manager.submit_sweep(["nope"], "fgsm", {}, "0"), timeout=60)
    assert failed.status == "failed" and "runs: no stored run 'nope'" in failed.error
    slow = manager.submit_sweep([ce, gccs], "pgd", {"steps": 50}, "0.1, 0.2", samples=300, force=True)
    manager.cancel(slow)
    assert manager.wait(slow, timeout=60).status == CANCELLED
    assert validate_eps("rotation", "0, 30") == [0.0, 30.0]


def test_charts_pair_adaptive_with_standard_and_dash_adversarial_training(trained):
    store, (ce, gccs), adv = trained
    for attack in ("pgd", "adaptive-pgd"):
        sweep_job(store, [gccs, adv], attack, {"steps": 3}, [0.0, 0.1], samples=100)
    records = {r: store.get_run(r) for r in (ce, gccs, adv)}
    results = [r for run_id in records for r in store.list_results(run_id, "accuracy")]
    charts = robustness_charts(results + results[:3], records)  # duplicates (live + cached) count once
    pgd = next(c for c in charts if c["attack"] == "pgd" and c["samples"] == 100)
    lines = {(l["run_id"], l["attack"]): l for l in pgd["lines"] if l["params"] == "alpha=0, restarts=1, steps=3"}
    assert set(lines) >= {(gccs, "pgd"), (gccs, "adaptive-pgd"), (adv, "pgd"), (adv, "adaptive-pgd")}
    assert lines[(gccs, "adaptive-pgd")]["adaptive"] and not lines[(gccs, "pgd")]["adaptive"]
    assert lines[(adv, "pgd")]["adversarially_trained"] and not lines[(gccs, "pgd")]["adversarially_trained"]
    assert lines[(gccs, "pgd")]["eps"] == [0.0, 0.05, 0.1]  # the first test's sweep joined this one
    assert lines[(adv, "pgd")]["eps"] == [0.0, 0.1]
    assert not any(c["attack"] == "adaptive-pgd" for c in charts)  # it joined PGD's chart


def _acc(run, attack, eps, accuracy, samples=100):
    return {"kind": "accuracy", "run_id": run, "attack": attack, "params": {}, "eps": eps, "samples": samples,
            "seed": 0, "accuracy": accuracy}


def test_cross_attack_sanity_checks():
    honest = [_acc("r", "fgsm", 0.1, 0.5), _acc("r", "pgd", 0.1, 0.3), _acc("r", "square", 0.1, 0.35),
              _acc("r", "tgsm", 0.1, 0.8),  # targeted: reaching y + 1 is harder than leaving y
              _acc("r", "adaptive-pgd", 0.1, 0.28)]
    assert cross_attack_warnings(honest) == []
    masked = [_acc("r", "fgsm", 0.1, 0.5), _acc("r", "pgd", 0.1, 0.7), _acc("r", "square", 0.1, 0.05),
              _acc("r", "adaptive-pgd", 0.1, 0.1), _acc("r", "pgd", 0.2, 0.9, samples=50)]
    found = cross_attack_warnings(masked)
    charts = sorted(a for a, _, _ in found)
    assert charts == ["pgd", "pgd", "square"], found
    assert any("weaker than one-step FGSM" in m for _, _, m in found)
    assert any("gradient-free square" in m for _, _, m in found)
    assert any("adaptive adaptive-pgd is much stronger than standard pgd (0.100 vs 0.700 at ε = 0.1; 100 samples)" in m
               for _, _, m in found)
    # one line per finding, however many ε show it
    over_eps = [_acc("r", "pgd", e, 0.7) for e in (0.1, 0.2)] + [_acc("r", "adaptive-pgd", e, 0.1) for e in (0.1, 0.2)]
    (only,) = cross_attack_warnings(over_eps)
    assert "at ε = 0.1;" in only[2] and "at ε = 0.2;" in only[2]


def test_latents_under_attack_trajectories_and_view(trained):
    store, (ce, gccs), _ = trained
    loaded, x, y = load_for_evaluation(store, [gccs], 100)
    model, objective, record = loaded[gccs]
    clean = attacked_latents(model, objective, x, y, "pgd", {"steps": 4, "alpha": 0.02}, 0.0, trajectory_points=20)
    with torch.no_grad():
        assert np.allclose(clean["z"], model(x).numpy(), atol=1e-5)
    torch.manual_seed(0)
    attacked = attacked_latents(model, objective, x, y, "pgd", {"steps": 4, "alpha": 0.02}, 0.2, trajectory_points=20)
    traj = attacked["trajectory"]
    assert traj.shape == (4 + 2, 20, 10)  # clean, the random start and 3 iterates, the final point
    assert np.allclose(traj[0], clean["z"][:20], atol=1e-5) and np.allclose(traj[-1], attacked["z"][:20], atol=1e-5)
    assert (attacked["pred"] == y.numpy()).mean() < (clean["pred"] == y.numpy()).mean()
    attacked["eps"] = 0.2
    view = shift_view(clean, attacked, y.numpy(), [0, 1, 9], record["geometry"])
    mask = np.isin(y.numpy(), [0, 1, 9])
    assert view["clean"].shape == view["attacked"].shape == (mask.sum(), 2)
    assert view["trajectory"].shape == (6, mask[:20].sum(), 2)
    centres = np.asarray(record["geometry"])[y.numpy()]
    assert np.allclose(view["distance_attacked"], np.linalg.norm(attacked["z"] - centres, axis=1))
    assert view["left_region"] == pytest.approx((attacked["pred"] != clean["pred"]).mean())
    assert view["accuracy"] == pytest.approx((attacked["pred"] == y.numpy()).mean())
    norms = shift_view(clean, attacked, y.numpy(), [0, 1, 9], None, distance="norm")
    assert np.allclose(norms["distance_clean"], np.linalg.norm(clean["z"], axis=1))


def test_shift_job_caches_each_eps_on_the_runs_fixed_subset(trained):
    store, (ce, gccs), _ = trained
    events = []
    out = shift_job(store, [ce, gccs], "pgd", {"steps": 2}, [0.1], samples=200, on_event=events.append)
    assert [(p["run_id"], p["eps"]) for p in out["points"]] == [(ce, 0.0), (gccs, 0.0), (ce, 0.1), (gccs, 0.1)]
    entry = cached_shift(store, gccs, "pgd", {"steps": 2, "alpha": 0.0, "restarts": 1}, 0.0, 200)
    stored = store.get_latents(gccs)  # the training snapshot shows the same points, clean
    assert np.array_equal(stored["indices"], fixed_subset(450, 200).numpy())
    assert np.allclose(entry["z"], stored["z"], rtol=2e-3, atol=2e-2)  # snapshots are kept in float16
    again = []
    shift_job(store, [ce, gccs], "pgd", {"steps": 2}, [0.1], samples=200, on_event=again.append)
    assert all(e["cached"] for e in again if e["type"] == "point")


def test_named_suite_reports_curves_and_warnings(trained):
    store, (ce, gccs), _ = trained
    out = suite_job(store, [ce, gccs], "pgd10", samples=60)
    assert out["attacks"][0]["attack"] == "pgd" and out["attacks"][0]["params"]["steps"] == 10
    curves = out["attacks"][0]["curves"]
    assert curves[ce]["eps"] == [0.0, 0.025, 0.05, 0.075, 0.1] and len(curves[gccs]["accuracy"]) == 5
    with pytest.raises(ConfigError, match="suite must be one of"):
        suite_job(store, [ce], "nope")


def test_measures_run_as_cached_jobs_and_become_tables(trained):
    from engine.measures import measure_job, measure_tables

    store, (ce, gccs), _ = trained
    records = {r: store.get_run(r) for r in (ce, gccs)}
    manager = JobManager(store=store)
    job = manager.wait(manager.submit_measure([ce, gccs], "deepfool", {"params": {"steps": 20}}, samples=40), 120)
    assert job.status == DONE and len(job.points) == 2 and all(p["rho"] > 0 for p in job.points)
    rows = measure_tables(store, [ce, gccs], "deepfool", records)["rows"]
    assert [r["run"][:4] for r in rows] == ["CE (", "GCCS"] and rows[0]["parameters"].startswith("candidates=10")
    again = []
    measure_job(store, [ce, gccs], "deepfool", {"params": job.points[0]["params"]}, 40, on_event=again.append)
    assert all(e["cached"] for e in again if e["type"] == "point")

    job = manager.wait(manager.submit_measure([ce, gccs], "transfer", {"attack": "fgsm", "eps": 0.1}, samples=60), 120)
    assert job.status == DONE
    (matrix,) = measure_tables(store, [ce, gccs], "transfer", records)["matrices"]
    assert len(matrix["accuracy"]) == 2 and len(matrix["accuracy"][0]) == 2
    loaded, x, y = load_for_evaluation(store, [ce, gccs], 60)
    from engine.robustness import robust_accuracy
    torch.manual_seed(0)
    white = robust_accuracy(*loaded[ce][:2], x, y, "fgsm", 0.1)
    assert matrix["accuracy"][0][0] == pytest.approx(white)  # the diagonal is the white-box number
    # a hand-made matrix where a transfer beats the white-box attack is flagged
    store.put_result(f"{gccs}:transfer:fake", {**job.points[1], "accuracy": [[0.0, 0.9]]})
    flagged = measure_tables(store, [ce, gccs], "transfer", records)["matrices"]
    assert any("beat the white-box attack" in w for m in flagged for w in m["warnings"])

    job = manager.wait(manager.submit_measure([ce], "spsa-grid", {"eps": 0.1, "iterations": [2], "spsa_samples": [8, 16]},
                                              samples=20), 120)
    (grid,) = measure_tables(store, [ce], "spsa-grid", records)["grids"]
    assert list(grid["rows"][0]) == ["iterations", "BS 8", "BS 16"]
    with pytest.raises(ConfigError, match="cw.steps"):
        manager.submit_measure([ce], "cw", {"params": {"steps": 0}})
    with pytest.raises(ConfigError, match="measure must be one of"):
        manager.submit_measure([ce], "nope", {})
    with pytest.raises(ConfigError, match="eps must be"):
        manager.submit_measure([ce], "transfer", {"attack": "fgsm", "eps": 3})


def test_sanity_warnings_spare_natural_corruptions():
    from engine.sanity import sanity_warnings

    assert sanity_warnings([0, 0.3], [0.99, 0.86], "gaussian-noise") == []
    assert sanity_warnings([0, 30], [0.99, 0.8], "rotation") == []
    assert len(sanity_warnings([0, 0.3], [0.99, 0.8], "pgd")) == 1


def test_command_line_evaluate_runs_a_named_suite(trained):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    store, (ce, gccs), _ = trained
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "SIMPLEX_STORE": str(store.path), "PYTHONPATH": str(root)}
    args = [sys.executable, "-m", "engine", "evaluate", ce, gccs, "--suite", "gccs-paper", "--samples", "40", "--quiet"]
    out = json.loads(subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, check=True).stdout)
    assert [a["attack"] for a in out["attacks"]] == ["fgsm", "pgd", "tgsm"]
    assert out["attacks"][1]["params"] == {"steps": 5, "alpha": 0.0, "restarts": 1} and out["samples"] == 40
    assert out["attacks"][0]["curves"][gccs]["eps"] == [0.0, 0.025, 0.05, 0.075, 0.1]
    assert {r["objective"] for r in out["runs"]} == {"ce", "gccs"} and isinstance(out["warnings"], list)
    bad = subprocess.run(args[:6] + ["--suite", "nope"], cwd=root, env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid choice: 'nope'" in bad.stderr


def test_command_line_measure_prints_the_tables_and_caches(trained, capsys):
    import json

    from engine.__main__ import main

    store, (ce, gccs), _ = trained
    args = ["--store", str(store.path), "measure", ce, gccs, "--measure", "deepfool", "--samples", "30",
            "--param", "steps=20", "--quiet"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["settings"]["params"]["steps"] == 20 and out["samples"] == 30
    assert [p["run_id"] for p in out["points"]] == [ce, gccs]
    assert all(p["settings"] == out["settings"] for p in out["points"])
    rows = [r for r in out["every_cached"]["rows"] if r["samples"] == 30]  # other tests cache other settings
    assert [r["run"][:4] for r in rows] == ["CE (", "GCCS"] and all("steps=20" in r["parameters"] for r in rows)
    # the same settings again: read from the cache, the same numbers
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["points"] == out["points"]
    # an SPSA grid from its comma-separated axes; bad axes and unknown runs are clear messages
    assert main(["--store", str(store.path), "measure", ce, "--measure", "spsa-grid", "--eps", "0.1",
                 "--iterations", "1,2", "--spsa-samples", "4", "--samples", "10", "--quiet"]) == 0
    grid = json.loads(capsys.readouterr().out)
    assert grid["settings"]["iterations"] == [1, 2] and grid["settings"]["spsa_samples"] == [4]
    assert main(["--store", str(store.path), "measure", ce, "--measure", "spsa-grid", "--iterations", "1,x"]) == 2
    assert "--iterations must be comma-separated integers" in capsys.readouterr().err
    assert main(["--store", str(store.path), "measure", "nope"]) == 2
    assert "no stored run 'nope'" in capsys.readouterr().err
