"""Background jobs: a queue and one worker thread per device, progress, cancel, captured failures.

A page (or a test) submits work and gets a job id back at once; the worker runs it and writes what
it publishes into the job record under the record's lock; readers take a consistent copy with
``JobManager.get``. One manager per process is shared by every Streamlit rerun and browser tab
(the app keeps it in ``st.cache_resource``).
"""
from __future__ import annotations

import copy
import os
import queue
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from .config import TrainConfig, validate
from .data import DatasetUnavailable
from .objectives import ConfigError
from .train import Cancelled, TrainingFailed, resolve_device, train_job

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)


@dataclass
class Job:
    """What readers see of a job. Mutated only by its worker, under ``lock``."""

    id: str
    kind: str
    title: str
    device: str
    settings: dict[str, Any]
    status: str = QUEUED
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    epoch: int = 0
    total_epochs: int = 0
    step: int = 0
    steps_per_epoch: int = 0
    progress: float = 0.0
    samples_per_s: float | None = None
    eta: float | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)  # run_id, objective, reused
    history: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # run_id -> epoch metrics
    latents: dict[str, dict[str, Any]] = field(default_factory=dict)  # run_id -> newest snapshot
    warnings: list[str] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)
    points: list[dict[str, Any]] = field(default_factory=list)  # evaluations: one result dict per point
    total_points: int = 0  # evaluations: how many points the job will produce
    worst_case: list[dict[str, Any]] = field(default_factory=list)  # suites: one worst-case point per (run, ε)
    detail: str = ""  # evaluations: what the progress bar says (the training panel uses epoch/step)
    error: str | None = None
    result: Any = None
    released: bool = False  # its payload (curves, latents, points, result) was dropped; see JobManager
    dismissed: bool = False  # hidden from the job panel by the user (a failed job's card)
    cancel_event: threading.Event = field(default_factory=threading.Event, repr=False)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def snapshot(self) -> "Job":
        """A copy safe to read while the worker goes on (latent arrays are shared, never mutated)."""
        with self.lock:
            clone = copy.copy(self)
            clone.runs = copy.deepcopy(self.runs)
            clone.history = {k: list(v) for k, v in self.history.items()}
            clone.latents = dict(self.latents)
            clone.warnings = list(self.warnings)
            clone.points = list(self.points)
            clone.worst_case = list(self.worst_case)
            clone.lock = threading.Lock()
        return clone

    # --- what the training loop publishes ------------------------------------------------------
    def publish(self, event: dict[str, Any]) -> None:
        with self.lock:
            kind = event["type"]
            if kind == "start":
                self.runs = event["runs"]
                self.warnings = list(event["warnings"])
                self.total_epochs = event["epochs"]
                self.device = event["device"]
                self.class_names = event["class_names"]
                for run in self.runs:
                    self.history.setdefault(run["run_id"], [])
            elif kind == "progress":
                self.epoch, self.step = event["epoch"], event["step"]
                self.steps_per_epoch = event["steps_per_epoch"]
                self.progress = event["done_steps"] / max(event["total_steps"], 1)
                self.eta = event["eta"]
            elif kind == "epoch":
                metrics = event["metrics"]
                self.history[event["run_id"]] = self.history.get(event["run_id"], []) + [metrics]
                self.latents[event["run_id"]] = {"epoch": metrics["epoch"], "z": event["latents"],
                                                 "y": event["labels"], "geometry": event["geometry"],
                                                 "views": event["views"]}
                self.samples_per_s = metrics["samples_per_s"]
            elif kind == "sweep-start":  # evaluations (engine.suites.sweep_job / suite_job, engine.latent.shift_job)
                self.runs = event["runs"]
                self.class_names = event.get("class_names", [])
                self.detail = f"0/{event['points']} points"
                self.total_points = event["points"]
            elif kind == "sweep-progress":
                self.progress = event["done"] / max(event["total"], 1)
                self.eta = event["eta"]
            elif kind == "point":
                self.points.append(event["result"])
                if self.kind != "suite":
                    self.detail = f"{len(self.points)}/{self.total_points} points"
            elif kind == "worst-case":
                self.worst_case.append(event)
                self.detail = f"{len(self.worst_case)}/{self.total_points} worst-case points"
            elif kind == "study-start":  # studies (engine.study_run): runs, not points
                self.total_points = event["runs"]
                self.detail = f"{event['runs'] - event['todo']}/{event['runs']} runs"
                self.progress = (event["runs"] - event["todo"]) / max(event["runs"], 1)
            elif kind == "study-progress":
                self.points.append(event)  # one per run finished (or failed, or retried): the cells' progress
                self.progress = event["done"] / max(event["total"], 1)
                self.eta = event["eta"]
                self.detail = f"{event['done']}/{event['total']} runs · {event['cell']} seed {event['seed']}"
            elif kind == "reused":
                record, stored = event["record"], event["latents"]
                self.history[event["run_id"]] = list(record["history"])
                if stored:
                    self.latents[event["run_id"]] = {"epoch": record["history"][-1]["epoch"],
                                                     "z": stored["z"], "y": stored["y"],
                                                     "geometry": record["geometry"],
                                                     "views": stored.get("views", {})}


class JobManager:
    """Queues jobs per device and runs them on worker threads.

    Arguments:
        store: a ``cache.RunStore`` that finished runs are written to (None: keep nothing).
        cpu_workers (int): worker threads for CPU jobs. Default 1: two CPU jobs at once would only
            split the same cores. Each CPU worker's torch gets (cores − 1) // cpu_workers threads
            (at least 1): one core stays free for the app server and the browser, because torch's
            OpenMP threads slow down badly when they have to share cores with other busy processes
            (measured on 2 cores: the quick preset took 3 min beside a browser with 2 threads).
        data_dir, download: passed to the dataset loader.
        keep_finished (int): finished jobs kept whole, newest first. Default 50. An older finished
            job is *released*: its curves, latents, points and result are dropped (what it computed
            is in the store), and a small record of it stays (title, status, runs, error), so a page
            still holding its id reads ``released`` instead of failing.
    """

    def __init__(self, store=None, cpu_workers: int = 1, data_dir=None, download: bool = False,
                 keep_finished: int = 50):
        self.store = store
        self.keep_finished = keep_finished
        self.data_dir = data_dir
        self.download = download
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Lock()
        self.queues: dict[str, queue.Queue] = {}
        self.threads: list[threading.Thread] = []
        self.cpu_threads = max(1, ((os.cpu_count() or 1) - 1) // max(cpu_workers, 1))
        devices = ["cpu"] * cpu_workers + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        for index, device in enumerate(devices):
            q = self.queues.setdefault(device, queue.Queue())
            thread = threading.Thread(target=self._worker, args=(device, q), daemon=True,
                                      name=f"simplex-worker-{device}-{index}")
            thread.start()
            self.threads.append(thread)

    # --- submitting ----------------------------------------------------------------------------
    def submit(self, kind: str, title: str, device: str, settings: dict[str, Any],
               work: Callable[[Job], Any]) -> str:
        """Queue ``work(job)`` on ``device`` ("cpu" or "cuda[:i]"); returns the job id at once."""
        device = "cuda:0" if device == "cuda" else device
        if device not in self.queues:
            raise ValueError(f"device must be one of {', '.join(self.queues)}; got {device!r}")
        job = Job(id=uuid.uuid4().hex[:10], kind=kind, title=title, device=device, settings=settings)
        with self.lock:
            self.jobs[job.id] = job
        self.queues[device].put((job, work))
        return job.id

    def submit_training(self, config: TrainConfig, force: bool = False, title: str | None = None,
                        download: bool | None = None) -> str:
        """Queue a training job, or return the id of a queued or running one with the same settings
        (a second click, or a second tab, follows the job already under way instead of queueing it twice)."""
        config = validate(config)  # bad settings fail here, in the caller, with the field named
        device = str(resolve_device(config.device))
        names = " vs ".join(o.name.upper() for o in config.objectives)
        title = title or f"{names} · {config.dataset} · {config.model} · {config.epochs} ep · seed {config.seed}"
        same = {"config": config.to_dict(), "force": force}
        with self.lock:
            under_way = [j for j in self.jobs.values() if j.kind == "train" and j.status in (QUEUED, RUNNING)
                         and j.settings == same and not j.cancel_event.is_set()]
        if under_way:
            return under_way[0].id

        def work(job: Job):
            return train_job(config, self.store, force=force, on_event=job.publish, cancel=job.cancel_event,
                             data_dir=self.data_dir, download=self.download if download is None else download)

        return self.submit("train", title, device, {"config": config.to_dict(), "force": force}, work)

    def submit_sweep(self, run_ids: list[str], attack: str, params: dict[str, Any], eps: list[float],
                     samples: int | None = None, seed: int = 0, force: bool = False, device: str = "cpu",
                     title: str | None = None) -> str:
        """Queue one attack's sweep (``engine.suites.sweep_job``); bad settings fail here."""
        from .attacks import attack_params
        from .robustness import validate_eps
        from .suites import sweep_job

        params = attack_params(attack, params)
        eps = validate_eps(attack, eps)
        if not run_ids:
            raise ConfigError("runs: choose at least one stored run")
        title = title or f"{attack} sweep · {len(run_ids)} run{'s' * (len(run_ids) > 1)} · {len(eps)} ε"

        def work(job: Job):
            return sweep_job(self.store, run_ids, attack, params, eps, samples, seed, force, job.device,
                             self.data_dir, on_event=job.publish, cancel=job.cancel_event)

        settings = {"runs": list(run_ids), "attack": attack, "params": params, "eps": eps, "samples": samples,
                    "seed": seed}
        return self.submit("sweep", title, device, settings, work)

    def submit_suite(self, run_ids: list[str], suite: str, eps=None, samples: int | None = None, seed: int = 0,
                     force: bool = False, device: str = "cpu") -> str:
        """Queue a named suite and its worst case (``engine.suites.suite_job``); bad settings fail here."""
        from .suites import suite_job, suite_plan

        plan = suite_plan(suite, eps)
        if not run_ids:
            raise ConfigError("runs: choose at least one stored run")
        grid = sorted({e for *_, g in plan for e in g})

        def work(job: Job):
            return suite_job(self.store, run_ids, suite, samples, seed, force, job.device, self.data_dir,
                             on_event=job.publish, cancel=job.cancel_event, eps=eps)

        settings = {"runs": list(run_ids), "suite": suite, "eps": grid, "samples": samples, "seed": seed}
        title = f"{suite} suite · {len(run_ids)} run{'s' * (len(run_ids) > 1)} · {len(grid)} ε"
        return self.submit("suite", title, device, settings, work)

    def submit_shift(self, run_ids: list[str], attack: str, params: dict[str, Any], eps: list[float],
                     samples: int = 1000, seed: int = 0, force: bool = False, device: str = "cpu") -> str:
        """Queue the latents of runs under attack over an ε grid (``engine.latent.shift_job``)."""
        from .attacks import single_run_params
        from .robustness import validate_eps
        from .latent import shift_job

        params = single_run_params(attack, params, "the latents under attack")
        eps = validate_eps(attack, eps)
        if not run_ids:
            raise ConfigError("runs: choose at least one stored run")

        def work(job: Job):
            return shift_job(self.store, run_ids, attack, params, eps, samples, seed, force, job.device,
                             self.data_dir, on_event=job.publish, cancel=job.cancel_event)

        settings = {"runs": list(run_ids), "attack": attack, "params": params, "eps": eps, "samples": samples,
                    "seed": seed}
        title = f"latents under {attack} · {len(run_ids)} run{'s' * (len(run_ids) > 1)} · {len(eps)} ε"
        return self.submit("shift", title, device, settings, work)

    def submit_measure(self, run_ids: list[str], measure: str, settings: dict[str, Any], samples: int | None = 100,
                       seed: int = 0, force: bool = False, device: str = "cpu") -> str:
        """Queue a measure of engine.measures for several runs (``engine.robustness.measure_job``)."""
        from .measures import measure_job, measure_settings

        settings = measure_settings(measure, settings)  # validated, defaults filled in: equal settings share a key
        if not run_ids:
            raise ConfigError("runs: choose at least one stored run")

        def work(job: Job):
            return measure_job(self.store, run_ids, measure, settings, samples, seed, force, job.device,
                               self.data_dir, on_event=job.publish, cancel=job.cancel_event)

        title = f"{measure} · {len(run_ids)} run{'s' * (len(run_ids) > 1)}"
        return self.submit("measure", title, device, {"runs": list(run_ids), "measure": measure, **settings}, work)

    def submit_study(self, study, executor: str = "local", address: str | None = None, device: str = "cpu") -> str:
        """Queue a study (``engine.study_run.run_study``); its result is ``engine.studies.study_results``."""
        from .study_run import EXECUTORS, run_study

        if executor not in EXECUTORS:
            raise ConfigError(f"executor must be one of {', '.join(EXECUTORS)}; got {executor!r}")
        seeds = ",".join(map(str, study.seeds))
        title = f"study {study.name} · {', '.join(study.datasets)} · seeds {seeds} · {executor}"

        def work(job: Job):
            return run_study(study, self.store, executor=executor, address=address or None,
                             threads=self.cpu_threads, device=job.device, data_dir=self.data_dir,
                             on_event=job.publish, cancel=job.cancel_event)

        return self.submit("study", title, device, {"study": study.to_dict(), "executor": executor}, work)

    def submit_examples(self, run_ids: list[str], attack: str, eps: float | None, params: dict[str, Any] | None = None,
                        indices: int | list[int] = 5, seed: int = 0, device: str = "cpu",
                        title: str | None = None) -> str:
        """Queue the adversarial-examples gallery (``engine.examples.adversarial_examples``) on
        ``device``'s worker ("cpu", "cuda[:i]" or "auto": the GPU when there is one), off the page
        thread: progress per run, cancel between runs; the gallery is the job's result. Bad settings
        (attack, parameters, budget, runs) fail here, in the caller; bad test indices fail the job."""
        from .attacks import ATTACKS, single_run_params, validate_budget
        from .examples import adversarial_examples

        params = single_run_params(attack, dict(params or {}), "the gallery")
        if ATTACKS[attack].budget == "none":
            eps = None
        else:
            eps = validate_budget(attack, [eps])[0]
        if not run_ids:
            raise ConfigError("runs: choose at least one stored run")
        if self.store is not None:
            for run_id in run_ids:
                if not self.store.has_run(run_id):
                    raise ConfigError(f"runs: no stored run {run_id!r}")
        indices = list(indices) if not isinstance(indices, int) else indices
        at_budget = "" if eps is None else f" at ε = {eps:g}"
        title = title or f"examples · {attack}{at_budget} · {len(run_ids)} run{'s' * (len(run_ids) > 1)}"
        device = str(resolve_device(device)) if device in ("auto", "cuda") else device

        def work(job: Job):
            return adversarial_examples(self.store, run_ids, attack, eps, params, indices, data_dir=self.data_dir,
                                        seed=seed, device=job.device, cancel=job.cancel_event, on_event=job.publish)

        settings = {"runs": list(run_ids), "attack": attack, "eps": eps, "params": params, "indices": indices,
                    "seed": seed}
        return self.submit("examples", title, device, settings, work)

    # --- reading and steering ------------------------------------------------------------------
    def get(self, job_id: str) -> Job:
        with self.lock:
            job = self.jobs.get(job_id)
        if job is None:
            raise KeyError(f"no job {job_id!r}")
        return job.snapshot()

    def list(self, limit: int | None = None, dismissed: bool = False) -> list[Job]:
        """The jobs of this process, newest first (only the newest ``limit`` are copied); the ones the
        user dismissed only when ``dismissed``."""
        with self.lock:
            jobs = sorted((j for j in self.jobs.values() if dismissed or not j.dismissed), key=lambda j: j.created,
                          reverse=True)
        return [j.snapshot() for j in jobs[:limit]]

    def dismiss(self, job_id: str) -> None:
        """Hide a finished job from ``list`` (a page holding its id still reads it with ``get``)."""
        with self.lock:
            job = self.jobs[job_id]
        with job.lock:
            if job.status in FINISHED:
                job.dismissed = True

    def cancel(self, job_id: str) -> None:
        with self.lock:
            job = self.jobs[job_id]
        job.cancel_event.set()
        with job.lock:
            if job.status == QUEUED:  # never started: the worker will skip it
                job.status, job.finished, job.error = CANCELLED, time.time(), "cancelled before it started"

    def wait(self, job_id: str, timeout: float | None = None, poll: float = 0.05) -> Job:
        deadline = None if timeout is None else time.time() + timeout
        while True:
            job = self.get(job_id)
            if job.status in FINISHED or (deadline is not None and time.time() > deadline):
                return job
            time.sleep(poll)

    def _release_old(self) -> None:
        """Drop the payload of every finished job but the newest ``keep_finished``."""
        with self.lock:
            finished = sorted((j for j in self.jobs.values() if j.status in FINISHED and not j.released),
                              key=lambda j: j.finished or 0, reverse=True)
        for job in finished[self.keep_finished:]:
            with job.lock:
                job.history, job.latents, job.points, job.worst_case = {}, {}, [], []
                job.result, job.released = None, True

    # --- the worker ----------------------------------------------------------------------------
    def _worker(self, device: str, jobs: queue.Queue) -> None:
        if device == "cpu":
            torch.set_num_threads(self.cpu_threads)
        while True:
            job, work = jobs.get()
            with job.lock:
                if job.status == CANCELLED:
                    continue
                job.status, job.started = RUNNING, time.time()
            try:
                result = work(job)
                status, error = DONE, None
            except (Cancelled, InterruptedError):
                status, error, result = CANCELLED, "cancelled by the user", None
            except (TrainingFailed, DatasetUnavailable, ConfigError) as exc:
                status, error, result = FAILED, str(exc), None
            except Exception as exc:  # a failure is shown with its message, never kills the worker
                status, result = FAILED, None
                error = f"{type(exc).__name__}: {exc}"
                traceback.print_exc()
            with job.lock:
                job.status, job.error, job.result, job.finished = status, error, result, time.time()
                if status == DONE:
                    job.progress = 1.0
                    job.eta = 0.0
            self._release_old()
