"""Running a study: train its runs (reusing stored ones), evaluate each, keep the values, summarise.

Two executors give the same numbers for the same seeds and thread count:
    local   this process: lockstep training jobs (``engine.train.train_job``), then each run's
            evaluations (``engine.studies.run_values``), all in the given store.
    ray     one Ray task per run, on an existing cluster (``address``) or a local one started for the
            study. A task trains and evaluates in a store of its own, in a temporary folder, and returns
            the run exported as ``cache.codec`` bytes (``RunStore.export_run``: JSON and raw arrays
            behind a checksum, never a pickle) with its values; the driver imports it into its store.
            So no shared filesystem is needed. A run the driver has stored already travels to the task
            with its cached results and is evaluated there, not retrained. A failed task is retried
            once and then reported; cancel stops every task still running.

Events (``on_event``): {"type": "study-start", "runs", "todo"} and {"type": "study-progress", "done",
"total", "cell", "seed", "run_id", "status" ("done", "reused", "failed", "retrying"), "eta"}.
"""
from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import torch

from .config import TrainConfig
from .studies import Study, planned_cells, planned_runs, run_values, save_values, stored_values, study_results, \
    training_jobs
from .train import Cancelled, train_job

EXECUTORS = ("local", "ray")
Event = Callable[[dict[str, Any]], None] | None
ROOT = Path(__file__).resolve().parent.parent


def run_study(study: Study, store, executor: str = "local", address: str | None = None, threads: int | None = None,
              cpus: int | None = None, device: str = "cpu", data_dir=None, on_event: Event = None,
              cancel: threading.Event | None = None) -> dict[str, Any]:
    """Train and evaluate every run of ``study`` that has no current values in ``store``; keep the
    values there with the definition; return ``engine.studies.study_results``."""
    from .objectives import ConfigError

    if executor not in EXECUTORS:
        raise ConfigError(f"--executor must be one of {', '.join(EXECUTORS)}; got {executor!r}")
    emit = on_event or (lambda event: None)
    cancel = cancel or threading.Event()
    started = time.perf_counter()
    runs = planned_runs(study)
    values = stored_values(store, study)
    todo = [r for r in runs if r["run_id"] not in values]
    emit({"type": "study-start", "runs": len(runs), "todo": len(todo)})
    labels = {i: c["label"] for i, c in enumerate(c for ds in study.datasets for c in planned_cells(study, ds))}
    progress = _Progress(emit, len(runs), len(runs) - len(todo), labels)
    computed: dict[str, Any] = {}  # filled run by run: a cancelled or failed study keeps what it finished
    try:
        if executor == "local":
            failed = _run_local(study, store, todo, threads, device, data_dir, progress, cancel, computed)
        else:
            failed = _run_ray(study, store, todo, address, threads or 1, cpus, device, data_dir, progress, cancel,
                              computed)
    finally:
        seconds = time.perf_counter() - started
        save_values(store, study, computed, seconds if todo else None)
    return study_results(study, {**values, **computed}, failed, seconds)


class _Progress:
    def __init__(self, emit, total: int, done: int, labels: dict[int, str]):
        self.emit, self.total, self.done, self.labels = emit, total, done, labels
        self.started, self.first = time.perf_counter(), done

    def __call__(self, run: dict[str, Any], status: str, error: str | None = None) -> None:
        if status in ("done", "reused", "failed"):
            self.done += 1
        elapsed, finished = time.perf_counter() - self.started, self.done - self.first
        self.emit({"type": "study-progress", "done": self.done, "total": self.total, "cell": self.labels[run["cell"]],
                   "seed": run["seed"], "run_id": run["run_id"], "status": status, "error": error,
                   "eta": elapsed / finished * (self.total - self.done) if finished else None})


def _run_local(study: Study, store, todo: list[dict[str, Any]], threads: int | None, device: str, data_dir,
               progress: _Progress, cancel: threading.Event, computed: dict[str, Any]) -> list[dict[str, Any]]:
    """Each run's values into ``computed`` as it finishes; returns the failed runs (none: a failure here
    fails the study, with its message)."""
    if threads:
        torch.set_num_threads(threads)
    by_id = {r["run_id"]: r for r in todo}
    for job in training_jobs(todo):
        config = job.with_(device=device) if device != "cpu" else job
        reused = {config.run_id(o) for o in config.objectives if store.has_run(config.run_id(o))}
        train_job(config, store, cancel=cancel, data_dir=data_dir)
        for spec in config.objectives:
            run_id = config.run_id(spec)
            if cancel.is_set():
                raise Cancelled("cancelled by the user")
            computed[run_id] = run_values(store, run_id, study.evaluate, device=device, data_dir=data_dir,
                                          cancel=cancel)
            progress(by_id[run_id], "reused" if run_id in reused else "done")
    return []


# --- Ray -------------------------------------------------------------------------------------------------
def study_task(config: dict[str, Any], evaluations: list[dict[str, Any]], threads: int, device: str, data_dir,
               stored: bytes | None) -> tuple[dict[str, Any], bytes]:
    """What one Ray task does: train (or import) one run in a temporary store, evaluate it, and
    return (values, the run exported with its cached results)."""
    from cache import RunStore

    torch.set_num_threads(threads)
    config = TrainConfig.from_dict(config)
    with tempfile.TemporaryDirectory(prefix="simplex-study-") as folder:
        store = RunStore(folder)
        try:
            if stored is not None:
                store.import_run(stored)
            train_job(config, store, data_dir=data_dir)
            run_id = config.run_id(config.objectives[0])
            values = run_values(store, run_id, tuple(evaluations), device=device, data_dir=data_dir)
            return values, store.export_run(run_id)
        finally:
            store.close()


def _ray_session(address: str | None, cpus: int | None):
    """Connect to the cluster at ``address``, or start a local one (``cpus`` CPUs, default all)."""
    from .objectives import ConfigError

    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs the ray package (pip install -r requirements.txt)") from None
    if ray.is_initialized():
        return ray, False
    if address is None:  # the cluster is the study's own: its workers are the study, not background work
        os.environ.setdefault("RAY_worker_niceness", "0")  # Ray's default, 15, starves them on a busy machine
    # the workers import this repository's packages: from this folder on one machine, uploaded to a cluster
    runtime_env = ({"env_vars": {"PYTHONPATH": str(ROOT)}} if address is None else
                   {"py_modules": [str(ROOT / "engine"), str(ROOT / "cache"), str(ROOT / "models")]})
    try:
        ray.init(address=address, num_cpus=cpus if address is None else None, include_dashboard=False,
                 log_to_driver=False, runtime_env=runtime_env, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"--address {address}: no Ray cluster could be reached ({exc})") from None
    return ray, True


def _run_ray(study: Study, store, todo: list[dict[str, Any]], address: str | None, threads: int, cpus: int | None,
             device: str, data_dir, progress: _Progress, cancel: threading.Event, computed: dict[str, Any]
             ) -> list[dict[str, Any]]:
    """Each run's values into ``computed`` as its task comes back; returns the runs that failed twice."""
    if not todo:
        return []
    ray, started_here = _ray_session(address, cpus)
    gpus = 1 if device.startswith("cuda") else 0
    task = ray.remote(num_cpus=threads, num_gpus=gpus, max_retries=0)(study_task)
    evaluations = [dict(e) for e in study.evaluate]
    failed: list[dict[str, Any]] = []
    attempts: dict[str, int] = {}
    pending: dict[Any, dict[str, Any]] = {}

    def submit(run: dict[str, Any]) -> None:
        stored = store.export_run(run["run_id"]) if store.has_run(run["run_id"]) else None
        config = run["config"].with_(device=device).to_dict()
        attempts[run["run_id"]] = attempts.get(run["run_id"], 0) + 1
        pending[task.remote(config, evaluations, threads, device, data_dir, stored)] = run

    try:
        for run in todo:
            submit(run)
        while pending:
            if cancel.is_set():
                for ref in pending:
                    ray.cancel(ref, force=True)
                raise Cancelled("cancelled by the user")
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            for ref in ready:
                run = pending.pop(ref)
                try:
                    values, exported = ray.get(ref)
                except Exception as exc:  # a task's failure (its error, a lost worker): once more, then reported
                    cause = getattr(exc, "cause", None) or exc  # a RayTaskError carries the task's own exception
                    lines = str(cause).strip().splitlines()
                    message = f"{type(cause).__name__}: {lines[0] if lines else 'no message'}"
                    if attempts[run["run_id"]] < 2:
                        progress(run, "retrying", message)
                        submit(run)
                    else:
                        failed.append({"run_id": run["run_id"], "seed": run["seed"],
                                       "cell": progress.labels[run["cell"]], "error": message, "attempts": 2})
                        progress(run, "failed", message)
                    continue
                store.import_run(exported)
                computed[run["run_id"]] = values
                progress(run, "done")
    finally:
        if started_here:
            ray.shutdown()
    return failed
