"""The training loop: one or more objectives trained in lockstep on identical batches.

Read top to bottom: devices and randomness, batch order, one member per objective, the loop, the
per-epoch evaluation, storing. The loop never knows which objective it runs: it calls
``objective.loss(z, y)`` and reads ``.loss`` and ``.parts``.

Fairness and reproducibility: every member is built from the same seed and sees the same batches in
the same order; each member owns its random stream (dropout), swapped in around its own step, so a
run's weights do not depend on which other objectives share the job. That is what lets the store
name a run by the hash of its own settings alone.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from models import build_model

from .augment import augment_batch
from .augment import resolve as resolve_augmentation
from .config import ObjectiveSpec, TrainConfig, validate, warnings_for
from .data import DATASETS, Dataset, load_dataset
from .metrics import class_kurtosis, macro_f1, r_ab
from .objectives import Objective, build_objective
from .rng import RNG_LOCK, derived_seed  # members are initialised, and CPU members step, under the lock

EVAL_BATCH = 1000
MAX_SNAPSHOTS = 60  # latent snapshots kept per run (thinned evenly beyond that)
AUGMENT_STREAM = 1  # derived_seed(seed, AUGMENT_STREAM) seeds a run's augmentation

EventSink = Callable[[dict[str, Any]], None]


class Cancelled(Exception):
    """The job's cancel flag was set; nothing was stored."""


class TrainingFailed(RuntimeError):
    """Training could not go on (e.g. a non-finite loss); nothing was stored."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingFailed("device: cuda was asked for but no CUDA GPU is available; choose cpu or auto")
    return torch.device(name)


# --- batch order -------------------------------------------------------------------------------
def epoch_batches(labels: torch.Tensor, batch_size: int, sampler: str, generator: torch.Generator,
                  num_classes: int) -> torch.Tensor:
    """Indices for one epoch as a (num_batches, batch_size) tensor; the last partial batch is
    dropped (per-batch class statistics need full batches).

    ``random``: a uniform permutation. ``balanced``: every class is spread evenly over the epoch,
    so each batch holds about batch_size/K samples of each class (GCCS spec §3, decision 3): each
    sample gets the key (rank within its class + U(0,1)) / class size and the epoch is the argsort.
    """
    n = labels.numel()
    if sampler == "random":
        order = torch.randperm(n, generator=generator)
    else:
        y = labels.cpu()
        shuffled = torch.randperm(n, generator=generator)
        counts = torch.bincount(y, minlength=num_classes).double()
        # rank of each (shuffled) sample within its class, vectorised: stable sort by class
        by_class = shuffled[torch.argsort(y[shuffled], stable=True)]
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.empty(n, dtype=torch.float64)
        rank[by_class] = torch.arange(n, dtype=torch.float64) - starts[y[by_class]]
        keys = (rank + torch.rand(n, generator=generator, dtype=torch.float64)) / counts[y]
        order = torch.argsort(keys)
    usable = (n // batch_size) * batch_size
    if usable == 0:
        raise TrainingFailed(f"batch_size {batch_size} is larger than the {n} training samples; lower batch_size")
    return order[:usable].view(-1, batch_size)


# --- one member per objective -------------------------------------------------------------------
class MixedPrecision(torch.nn.Module):
    """A model whose forward passes run under bfloat16 autocast and hand back fp32 tensors: the
    network computes in bf16, and the objective that reads its outputs computes its loss, batch
    statistics and distances in fp32, outside autocast. Anything else is the wrapped model's."""

    def __init__(self, model: torch.nn.Module, device_type: str):
        super().__init__()
        self.inner, self.device_type = model, device_type

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            z = self.inner(x)
        return z.float()

    def forward_features(self, x: torch.Tensor):
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            features, z = self.inner.forward_features(x)
        return [f.float() for f in features], z.float()

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.inner, name)


def training_module(model: torch.nn.Module, config: TrainConfig, device: torch.device) -> torch.nn.Module:
    """What the training step calls: the model, compiled and/or in bf16 as the settings ask (the
    model itself is what is evaluated, attacked and stored)."""
    trained = torch.compile(model) if config.compile else model
    return MixedPrecision(trained, device.type) if config.precision == "bf16" else trained


@dataclass
class Member:
    spec: ObjectiveSpec
    run_id: str
    settings: dict[str, Any]
    model: torch.nn.Module
    objective: Objective
    optimizer: torch.optim.Optimizer
    scheduler: Any
    rng_state: torch.Tensor
    history: list[dict[str, Any]] = field(default_factory=list)
    snapshots: list[tuple[int, np.ndarray]] = field(default_factory=list)
    adversarial: TrainConfig | None = None  # the job's settings when it trains adversarially
    step_seconds: float = 0.0
    pending_timers: list = field(default_factory=list)
    views: dict[str, dict[str, np.ndarray | None]] = field(default_factory=dict)  # newest extra views
    trained: torch.nn.Module | None = None  # what the training step calls (``training_module``)
    channels_last: bool = False

    def __post_init__(self):
        if self.trained is None:
            self.trained = self.model


def build_member(config: TrainConfig, spec: ObjectiveSpec, data: Dataset, device: torch.device,
                 init_state: dict[str, torch.Tensor] | None = None) -> tuple[Member, list[str]]:
    """One objective's model, objective, optimiser and random stream. ``init_state``: the model
    weights to fine-tune from; tensors whose shape differs (a mapper of another latent size) keep
    their fresh initialisation and are named in the returned notes."""
    notes: list[str] = []
    with RNG_LOCK:
        # Seed only the CPU generator: torch.manual_seed would also reseed every GPU under other jobs.
        torch.random.default_generator.manual_seed(config.seed)
        objective = build_objective(spec.name, data.num_classes, spec.params)
        # Reseed: an objective with parameters of its own (the centre loss's classifier) must not
        # shift the model's initial weights away from those of the other objectives of the job.
        torch.random.default_generator.manual_seed(config.seed)
        model = build_model(config.model, data.in_channels, data.image_size, objective.latent_dim,
                            dropout=config.dropout, mean=data.mean, std=data.std)
        if init_state is not None:
            own = model.state_dict()
            usable = {k: v for k, v in init_state.items() if k in own and own[k].shape == v.shape}
            skipped = sorted(set(own) - set(usable))
            model.load_state_dict(usable, strict=False)
            if skipped:
                notes.append(f"{spec.name}: fine-tuning kept fresh weights for {', '.join(skipped)} "
                             f"(shape differs from the stored run: another latent size)")
        objective.attach(model)
        if device.type == "cuda":
            generator = torch.Generator(device=device)
            generator.manual_seed(config.seed)
            rng_state = generator.get_state()
        else:
            rng_state = torch.get_rng_state()
    model.to(device, memory_format=torch.channels_last if config.channels_last else torch.preserve_format)
    objective.to(device)
    params = list(model.parameters()) + list(objective.shared_parameters())
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                                    weight_decay=config.weight_decay, nesterov=config.momentum > 0)
    else:
        optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    elif config.schedule == "step":
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_size, gamma=config.gamma)
    else:
        scheduler = None
    member = Member(spec, config.run_id(spec), config.run_settings(spec), model, objective, optimizer,
                    scheduler, rng_state, adversarial=config if config.adv_attack != "none" else None,
                    trained=training_module(model, config, device),
                    channels_last=config.channels_last)
    return member, notes


class _StepTimer:
    """Wall time of one member's steps: perf_counter on CPU, CUDA events on a GPU (no sync per step)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def start(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def stop(self, member: Member, started) -> None:
        if self.cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            member.pending_timers.append((started, end))
        else:
            member.step_seconds += time.perf_counter() - started

    def settle(self, member: Member) -> None:
        if member.pending_timers:
            torch.cuda.synchronize()
            member.step_seconds += sum(a.elapsed_time(b) for a, b in member.pending_timers) / 1000
            member.pending_timers.clear()


def adversarial_attack(member: Member, adv: TrainConfig):
    """The attack of the registry's classes (``engine.attacks``) that adversarial training crafts with:
    PGD on the objective's adaptive attack objective (``AdaptivePGD``; with the clean latents when the
    objective uses them, e.g. MAT's BIBO term) for ``adv_loss="adaptive"``, else PGD on CE of its
    logits (``CEPGD``). PGD: ``adv_steps`` steps of ``adv_step`` from a uniform random start in the
    ε-ball; FGSM: one step of ε from x, no random start."""
    from .attacks import AdaptivePGD, LogitsModel
    from .attacks.objective_pgd import CEPGD

    fgsm = adv.adv_attack == "fgsm"
    steps, step = (1, adv.adv_eps) if fgsm else (adv.adv_steps, adv.adv_step)
    cls = AdaptivePGD if adv.adv_loss == "adaptive" else CEPGD
    return cls(LogitsModel(member.model, member.objective), eps=adv.adv_eps, alpha=step, steps=steps,
               random_start=not fgsm)


def craft_adversarial(member: Member, x: torch.Tensor, y: torch.Tensor, adv: TrainConfig) -> torch.Tensor:
    """FGSM or PGD (random start) examples for adversarial training, within ε in ℓ∞ and [0, 1],
    crafted by the attack classes of ``engine.attacks`` (``adversarial_attack``).

    They maximise the objective's adaptive attack objective (``adv_loss="adaptive"``) or CE on its
    logits; targeted ones move towards targets drawn uniformly from y_t ≠ y. The model is in eval
    mode while crafting, so BatchNorm statistics see only the training step's batches; every module's
    mode is restored afterwards. The random draws (targets, random start) come from the global
    generators, i.e. from the member's own stream that ``train_step`` swaps in.
    """
    model, objective = member.model, member.objective
    attack = adversarial_attack(member, adv)
    if adv.adv_targeted:
        k = objective.num_classes
        target = (y + torch.randint(1, k, y.shape, device=y.device)) % k
        attack.set_mode_targeted_by_function(lambda images, labels: target, quiet=True)
    modes = [(m, m.training) for m in (*model.modules(), *objective.modules())]
    model.eval()
    objective.eval()
    try:
        x_adv = attack(x, y)
    finally:
        for module, mode in modes:
            module.training = mode
    return x_adv.detach()


def batch_loss(member: Member, xb: torch.Tensor, yb: torch.Tensor):
    """The objective's training loss, mixed with its loss on adversarial examples when asked."""
    objective, model, adv = member.objective, member.trained, member.adversarial
    if adv is None:
        return objective.training_loss(model, xb, yb)
    x_adv = craft_adversarial(member, xb, yb, adv)
    w = adv.adv_clean_weight
    adversarial = objective.training_loss(model, x_adv, yb)
    if w == 0:  # adversarial examples only (MMC's AT); training accuracy is then on them
        adversarial.parts = {**adversarial.parts, "adv_loss": adversarial.parts["loss"]}
        return adversarial
    clean = objective.training_loss(model, xb, yb)
    clean.loss = w * clean.loss + (1 - w) * adversarial.loss
    clean.parts = {**clean.parts, "adv_loss": adversarial.parts["loss"],
                   "loss": w * clean.parts["loss"] + (1 - w) * adversarial.parts["loss"]}
    return clean


def train_step(member: Member, xb: torch.Tensor, yb: torch.Tensor, device: torch.device):
    """One optimiser step of one member, inside its own random stream. Returns (parts, correct)."""
    cpu = device.type == "cpu"
    if cpu:
        RNG_LOCK.acquire()
        torch.set_rng_state(member.rng_state)
    else:
        torch.cuda.set_rng_state(member.rng_state, device)
    if member.channels_last:
        xb = xb.contiguous(memory_format=torch.channels_last)
    try:
        member.model.train()
        member.objective.train()
        out = batch_loss(member, xb, yb)
        member.optimizer.zero_grad(set_to_none=True)
        member.objective.before_step()
        out.loss.backward()
        member.optimizer.step()
        z = out.z.detach()
        member.objective.after_step(z, yb)
    finally:
        if cpu:
            member.rng_state = torch.get_rng_state()
            RNG_LOCK.release()
        else:
            member.rng_state = torch.cuda.get_rng_state(device)
    correct = (member.objective.predict(z) == yb).sum()
    return out.parts, correct


@torch.no_grad()
def latents_of(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x[i:i + EVAL_BATCH]) for i in range(0, len(x), EVAL_BATCH)])


def views_of(member: Member, x: torch.Tensor) -> dict[str, dict[str, np.ndarray | None]]:
    """The objective's extra latent spaces (e.g. PCL's layers) for the fixed test subset."""
    member.model.eval()
    member.objective.eval()
    return {name: {"z": compact(f.float().cpu().numpy()),
                   "geometry": None if c is None else c.float().cpu().numpy().copy()}
            for name, (f, c) in member.objective.views(member.model, x).items()}


def evaluate_member(member: Member, data: Dataset, subset: torch.Tensor) -> tuple[dict[str, Any], np.ndarray]:
    """Test metrics of one member and the latents of the fixed test subset."""
    z = latents_of(member.model, data.x_test).float()
    member.objective.eval()
    pred = member.objective.test_predictions(member.model, data.x_test, z)
    k = data.num_classes
    r, r_ci = r_ab(z, data.y_test, k)
    metrics = {
        "test_acc": float((pred == data.y_test).float().mean()),
        "test_f1": macro_f1(pred, data.y_test, k),
        "r_ab": r, "r_ab_ci": r_ci,
        "kurtosis": class_kurtosis(z, data.y_test, k),
        "diagnostics": member.objective.diagnostics(z, data.y_test),
    }
    return metrics, z[subset].cpu().numpy()


def fixed_subset(n_test: int, size: int) -> torch.Tensor:
    """The test samples whose latents are published: fixed for every run (seeded apart from runs)."""
    generator = torch.Generator().manual_seed(20231)
    return torch.sort(torch.randperm(n_test, generator=generator)[:min(size, n_test)]).values


def thin(snapshots: list, limit: int = MAX_SNAPSHOTS) -> list:
    """Evenly spaced (epoch, latents) snapshots: the first epoch, every ``stride``-th after it and the
    newest, at most ``limit`` of them. The stride is the smallest power of two that keeps at most
    ``limit`` of them from the first epoch to the newest, so it only grows as epochs are appended
    one at a time and every epoch it keeps was kept before (a 1,800-epoch run keeps epochs 1, 33,
    65, ..., 1,793 and 1,800)."""
    if not snapshots:
        return snapshots
    first, last = snapshots[0][0], snapshots[-1][0]
    stride = 1
    while (last - first) // stride + 1 + ((last - first) % stride > 0) > limit:
        stride *= 2
    return [s for s in snapshots[:-1] if (s[0] - first) % stride == 0] + snapshots[-1:]


def compact(latents: np.ndarray) -> np.ndarray:
    """Latents as float16 to halve what is stored and sent, unless a value does not fit (|z| beyond
    65,504 or not finite, as in a run that diverged): then float32, so nothing is turned into inf."""
    latents = np.asarray(latents, dtype=np.float32)
    fits = latents.size == 0 or (np.isfinite(latents).all() and np.abs(latents).max() <= np.finfo(np.float16).max)
    return latents.astype(np.float16) if fits else latents


def divergence(final: dict[str, Any], y_test: torch.Tensor, num_classes: int, latents: np.ndarray) -> str | None:
    """Why a finished run learned nothing usable, or None. The run is stored all the same (it is what
    these settings produce, and a study's cell must not silently retrain or vanish); the reason is
    kept in its record, listed and warned about. Chance is the share of the most frequent test
    class (what a constant prediction scores); up to two binomial standard errors above it the test
    accuracy is indistinguishable from guessing."""
    if not np.isfinite(latents).all():
        return "its latents became infinite or NaN (the weights diverged)"
    n = len(y_test)
    chance = float(torch.bincount(y_test.cpu(), minlength=num_classes).max()) / n
    band = 2 * math.sqrt(chance * (1 - chance) / n)
    if final["test_acc"] <= chance + band:
        return (f"its test accuracy {final['test_acc']:.3f} is no better than chance (the most frequent class's "
                f"{chance:.3f} + 2 standard errors = {chance + band:.3f} on {n} test images): it diverged or did not "
                f"train long enough; try a lower learning rate or more epochs")
    return None


# --- the job -------------------------------------------------------------------------------------
def train_job(config: TrainConfig, store=None, *, force: bool = False, on_event: EventSink | None = None,
              cancel: threading.Event | None = None, data_dir=None, download: bool = False) -> list[dict[str, Any]]:
    """Train every objective of ``config`` in lockstep; store each finished run; return the records.

    Runs already in ``store`` under the same settings are reused (not retrained) unless ``force``.
    ``on_event`` receives plain dicts: ``start``, ``progress`` (every step), ``epoch`` (per run,
    with metrics and a latent snapshot), ``reused``. Raises ``Cancelled`` or ``TrainingFailed``;
    then nothing is written to the store.
    """
    config = validate(config)
    emit = on_event or (lambda event: None)
    cancel = cancel or threading.Event()
    device = resolve_device(config.device)
    warnings = warnings_for(config, DATASETS[config.dataset].num_classes)

    records: dict[str, dict[str, Any]] = {}
    to_train: list[ObjectiveSpec] = []
    for spec in config.objectives:
        run_id = config.run_id(spec)
        if store is not None and not force and store.has_run(run_id):
            records[run_id] = store.get_run(run_id)
        else:
            to_train.append(spec)
    run_ids = [config.run_id(s) for s in config.objectives]
    members: list[Member] = []
    if to_train:  # a fully reused job never touches the data (loading CIFAR takes seconds)
        data = load_dataset(config.dataset, data_dir=data_dir, download=download).to(device)
        init_state = fine_tuning_source(config, store)
        for spec in to_train:
            member, notes = build_member(config, spec, data, device, init_state)
            members.append(member)
            warnings += notes
    class_names = list(data.class_names) if members else next(iter(records.values()))["class_names"]
    emit({"type": "start", "runs": [{"run_id": r, "objective": s.name, "reused": r in records}
                                    for r, s in zip(run_ids, config.objectives)],
          "warnings": warnings, "epochs": config.epochs, "device": str(device),
          "class_names": class_names})
    for run_id, record in records.items():
        emit({"type": "reused", "run_id": run_id, "record": record,
              "latents": store.get_latents(run_id) if store is not None else {}})
    if not to_train:
        return [records[r] for r in run_ids]

    subset = fixed_subset(len(data.y_test), config.latent_samples).to(device)
    y_subset = data.y_test[subset].cpu().numpy()
    generator = torch.Generator().manual_seed(config.seed)
    if device.type == "cuda":  # fixed batch shapes: let cuDNN time its convolution algorithms once
        torch.backends.cudnn.benchmark = True
    augmentation = resolve_augmentation(config.augment, config.dataset)
    # a stream of its own, on the device: the batches' order stays that of an unaugmented run
    augment_stream = torch.Generator(device=device).manual_seed(derived_seed(config.seed, AUGMENT_STREAM))
    timer = _StepTimer(device)
    started = time.perf_counter()
    steps_per_epoch = len(data.y_train) // config.batch_size
    total_steps = steps_per_epoch * config.epochs
    done_steps = 0

    for epoch in range(1, config.epochs + 1):
        batches = epoch_batches(data.y_train, config.batch_size, config.sampler, generator, data.num_classes)
        batches = batches.to(device)
        sums = [dict() for _ in members]
        correct = [torch.zeros((), device=device, dtype=torch.long) for _ in members]
        epoch_start = time.perf_counter()
        for member in members:
            member.objective.set_epoch(epoch)
        for step, idx in enumerate(batches, start=1):
            if cancel.is_set():
                raise Cancelled("cancelled by the user")
            xb, yb = augment_batch(data.x_train[idx], augmentation, augment_stream), data.y_train[idx]
            for i, member in enumerate(members):
                t0 = timer.start()
                parts, right = train_step(member, xb, yb, device)
                timer.stop(member, t0)
                for key, value in parts.items():
                    sums[i][key] = sums[i].get(key, 0.0) + value
                correct[i] += right
            done_steps += 1
            elapsed = time.perf_counter() - started
            emit({"type": "progress", "epoch": epoch, "step": step, "steps_per_epoch": steps_per_epoch,
                  "done_steps": done_steps, "total_steps": total_steps, "elapsed": elapsed,
                  "eta": elapsed / done_steps * (total_steps - done_steps)})
        seen = len(batches) * config.batch_size
        for member in members:
            timer.settle(member)
        train_seconds = time.perf_counter() - epoch_start
        for i, member in enumerate(members):
            losses = {key: float(value) / len(batches) for key, value in sums[i].items()}
            if not all(math.isfinite(v) for v in losses.values()):
                bad = next(k for k, v in losses.items() if not math.isfinite(v))
                raise TrainingFailed(
                    f"objective {member.spec.name}: the training loss part '{bad}' became {losses[bad]} in epoch "
                    f"{epoch}; nothing was stored. Try a lower learning rate (lr={config.lr}).")
            if member.scheduler is not None:
                member.scheduler.step()
            if epoch % config.eval_every and epoch != config.epochs:
                continue  # not an evaluated epoch: the history holds the evaluated ones
            metrics, snapshot = evaluate_member(member, data, subset)
            entry = {"epoch": epoch, "time": time.perf_counter() - started, "loss": losses,
                     "train_acc": float(correct[i]) / seen, "samples_per_s": seen / train_seconds,
                     "lr": member.optimizer.param_groups[0]["lr"], "train_seconds": member.step_seconds,
                     **metrics}
            member.history.append(entry)
            member.snapshots = thin(member.snapshots + [(epoch, compact(snapshot))])
            member.views = views_of(member, data.x_test[subset])
            emit({"type": "epoch", "run_id": member.run_id, "objective": member.spec.name, "metrics": entry,
                  "latents": snapshot, "labels": y_subset, "geometry": geometry_of(member), "views": member.views})

    job_seconds = time.perf_counter() - started
    for member in members:
        record = make_record(config, member, data, device, job_seconds, warnings)
        if store is not None:
            store.save_run(record, checkpoint_of(member),
                           {"z": np.asarray(member.snapshots[-1][1], dtype=np.float32), "y": y_subset,
                            "indices": subset.cpu().numpy(), "snapshots": member.snapshots,
                            "views": member.views})
        records[member.run_id] = record
    return [records[r] for r in run_ids]


def fine_tuning_source(config: TrainConfig, store) -> dict[str, torch.Tensor] | None:
    """The stored model weights ``config.init_from`` names, after checking they fit this job."""
    if not config.init_from:
        return None
    if store is None or not store.has_run(config.init_from):
        raise TrainingFailed(f"init_from: no stored run {config.init_from!r} to fine-tune from; "
                             "`python -m engine runs` lists the stored ones")
    source = store.get_run(config.init_from)
    for field_name in ("dataset", "model"):
        if source[field_name] != getattr(config, field_name):
            raise TrainingFailed(f"init_from: run {config.init_from} was trained with {field_name} "
                                 f"{source[field_name]!r}, this job uses {getattr(config, field_name)!r}")
    return store.load_checkpoint(config.init_from)["model"]


def geometry_of(member: Member) -> np.ndarray | None:
    """A copy of the objective's centres now (learned ones, like the centre loss's, move)."""
    geometry = member.objective.geometry()
    return None if geometry is None else geometry.detach().cpu().numpy().copy()


def checkpoint_of(member: Member) -> dict[str, Any]:
    return {"model": {k: v.detach().cpu() for k, v in member.model.state_dict().items()},
            "objective": {k: v.detach().cpu() for k, v in member.objective.state_dict().items()}}


def make_record(config: TrainConfig, member: Member, data: Dataset, device: torch.device,
                job_seconds: float, warnings: list[str]) -> dict[str, Any]:
    final = member.history[-1]
    diverged = divergence(final, data.y_test, data.num_classes, member.snapshots[-1][1])
    return {
        "run_id": member.run_id,
        "created": time.time(),
        "settings": member.settings,
        "objective": member.spec.name,
        "dataset": config.dataset,
        "model": config.model,
        "num_classes": data.num_classes,
        "class_names": list(data.class_names),
        "latent_dim": member.objective.latent_dim,
        "geometry": geometry_of(member),
        "device": str(device),
        "torch": torch.__version__,
        "history": member.history,
        "final": {k: final[k] for k in ("test_acc", "test_f1", "r_ab", "r_ab_ci", "train_acc", "kurtosis",
                                         "diagnostics")},
        "timing": {"train_seconds": member.step_seconds, "job_seconds": job_seconds,
                   "epochs": config.epochs, "samples_per_s": final["samples_per_s"]},
        "warnings": warnings + ([f"{member.spec.name}: {diverged}"] if diverged else []),
        "diverged": diverged is not None,
        "diverged_reason": diverged,
    }


def load_run(store, run_id: str, device: str | torch.device = "cpu"):
    """Rebuild a stored run's model and objective in eval mode: (model, objective, record)."""
    record = store.get_run(run_id)
    s = record["settings"]
    objective = build_objective(s["objective"], record["num_classes"], s["params"])
    state = store.load_checkpoint(run_id)
    channels, size, _ = DATASETS[s["dataset"]].shape
    model = build_model(s["model"], channels, size, objective.latent_dim, dropout=s["dropout"])
    model.load_state_dict(state["model"])
    objective.load_state_dict(state["objective"])
    return model.to(device).eval(), objective.to(device).eval(), record
