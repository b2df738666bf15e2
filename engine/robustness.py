"""Robust accuracy as per-sample outcomes: which test samples an attack breaks, cached per (run, attack,
parameters, ε, sample set, seed), and the worst case over an ensemble composed from them.

A sample is *robust* at ε against a set of attacks when the run classifies it correctly clean and no
attack of the set makes it misclassified (../shared/spec/attacks.md, "The headline is a per-sample
worst case"). One attack's accuracy is an upper bound on that worst case. The cache holds, for each
attack setting, the samples it was run on and the ones that survived, so
- an ensemble runs each later attack only on the samples the earlier ones left unbroken (Croce &
  Hein 2020), and an attack already run on those samples costs nothing;
- a single attack's curve is the same attack run on every clean-correct sample;
- any set of attacks' worst case is the union of their cached outcomes.

Decisions use the objective's own test rule (``objective.test_predictions``, the rule of the run's
clean accuracy). Adversarial inputs of an ℓ∞ attack are projected onto the ε-ball and [0, 1] before
they are classified, so no attack can win with a step it was not allowed. Every attack (and every
restart) draws from a stream of its own (``engine.rng.private_rng``).
"""
from __future__ import annotations

import time
from typing import Any, Callable

import torch

from cache.points import cached, store_point, stored

from .rng import derived_seed, private_rng

Progress = Callable[[int, int], None] | None
DEFAULT_BATCH = {"cpu": 1000, "cuda": 4096}  # samples attacked at once; the papers' 100 is a setting
# On a CPU a batch's activations must stay in cache: 1,000 digits (8×8) attack fastest at once, but
# 1,000 Fashion-MNIST images (28×28) took 1.6× as long as 100 (bench_attacks.py on its test split).
CPU_BATCH_PIXELS = 65_536


def attack_batch(x: torch.Tensor, batch_size: int | None) -> int:
    """The attack batch for images ``x``: ``batch_size`` when given; else the device's default, on a
    CPU at most CPU_BATCH_PIXELS pixels a batch (and at least the papers' 100 images)."""
    size = validate_batch(batch_size) or DEFAULT_BATCH.get(x.device.type, 1000)
    if batch_size is None and x.device.type == "cpu" and x.dim() > 1:
        size = max(100, min(size, CPU_BATCH_PIXELS // max(x.shape[1:].numel(), 1)))
    return size


def validate_batch(batch_size: int | None) -> int | None:
    """``batch_size`` (samples attacked at once) checked: None (the device's default) or 1 … 1,000,000."""
    from .objectives import ConfigError

    if batch_size is None:
        return None
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= 1_000_000:
        raise ConfigError(f"batch_size (--batch-size) must be an integer in 1 … 1000000 (samples attacked at once); "
                          f"got {batch_size!r}")
    return batch_size


def _check(cancel) -> None:
    if cancel is not None and cancel.is_set():
        raise InterruptedError("cancelled")


# --- per-sample outcomes --------------------------------------------------------------------------
def correct_mask(model, objective, x: torch.Tensor, y: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """(N,) bool: the run's decision on x equals y (model in eval mode; one host sync at the end)."""
    model.eval()
    objective.eval()
    size = attack_batch(x, batch_size)
    out = []
    with torch.no_grad():
        for i in range(0, len(y), size):
            xb = x[i:i + size]
            out.append(objective.test_predictions(model, xb, model(xb)) == y[i:i + size])
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.bool, device=y.device)


def attack_survivors(model, objective, x: torch.Tensor, y: torch.Tensor, attack: str, eps: float,
                     params: dict[str, Any], seed: int = 0, batch_size: int | None = None, cancel=None,
                     progress: Progress = None) -> torch.Tensor:
    """(N,) bool: the samples of x that ``attack`` at ``eps`` leaves correctly classified, best over
    ``params["restarts"]`` restarts (restart r runs only on the samples restarts < r left standing,
    with its own seed). ``params`` must be validated (``engine.attacks.attack_params``)."""
    from .attacks import ATTACKS, build_attack

    model.eval()
    objective.eval()
    restarts = int(params.get("restarts", 1))
    linf = ATTACKS[attack].budget == "linf"
    size = attack_batch(x, batch_size)
    alive = torch.ones(len(y), dtype=torch.bool, device=y.device)
    done = 0
    for restart in range(restarts):
        index = alive.nonzero().flatten()  # one host sync per restart, none per batch
        if index.numel() == 0:
            break
        stream = derived_seed(seed, restart)
        atk = build_attack(attack, model, objective, eps, **params)
        if hasattr(atk, "seed"):  # torchattacks' APGD, FAB, Square reseed torch from their own seed
            atk.seed = stream
        survived = []
        with private_rng(stream, x.device):
            for i in range(0, index.numel(), size):
                _check(cancel)
                rows = index[i:i + size]
                xb, yb = x[rows], y[rows]
                xa = atk(xb, yb).detach()
                if linf:
                    xa = torch.minimum(torch.maximum(xa, xb - eps), xb + eps).clamp(0, 1)
                with torch.no_grad():
                    survived.append(objective.test_predictions(model, xa, model(xa)) == yb)
                done += len(rows)
                if progress is not None:
                    progress(done, len(y) * restarts)
        alive[index] = torch.cat(survived)
    return alive


def bits(mask: torch.Tensor) -> str:
    """A boolean mask as a string of 0/1 (JSON-safe, readable, one character a sample)."""
    return "".join("1" if v else "0" for v in mask.tolist())


def unbits(text: str, device="cpu") -> torch.Tensor:
    return torch.tensor([c == "1" for c in text], dtype=torch.bool, device=device)


# --- the cache ------------------------------------------------------------------------------------
def accuracy_settings(attack: str, params: dict[str, Any], eps: float, samples: int, seed: int = 0) -> dict[str, Any]:
    """What determines an attack's outcome: attack, its parameters, ε, the first ``samples`` test points
    and the seed of its random starts."""
    return {"attack": attack, "params": dict(params), "eps": float(eps), "samples": int(samples), "seed": int(seed)}


def clean_outcome(store, run_id: str, model, objective, x, y, force: bool = False,
                  batch_size: int | None = None) -> torch.Tensor:
    """(N,) bool: the clean test decisions that are right, cached per (run, samples)."""
    def compute() -> dict[str, Any]:
        correct = correct_mask(model, objective, x, y, batch_size)
        return {"correct": bits(correct), "accuracy": float(correct.float().mean())}

    entry, _ = cached(store, run_id, "clean", {"samples": len(y)}, compute, force=force,
                      usable=lambda e: len(e.get("correct", "")) == len(y))
    return unbits(entry["correct"], y.device)


def attack_outcome(store, run_id: str, model, objective, x, y, attack: str, params: dict[str, Any], eps: float,
                   seed: int, need: torch.Tensor, force: bool = False, cancel=None, progress: Progress = None,
                   batch_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The outcome of one attack setting on the samples ``need`` marks: (attacked, survived, computed).

    ``attacked`` (N,) marks every sample the cache now has an answer for (a superset of ``need``),
    ``survived`` (N,) those of them the attack left correctly classified; ``computed`` counts the
    samples attacked by this call (0 when everything came from the cache). New answers are merged into
    the cached entry at once, so a cancelled ensemble keeps every attack it finished."""
    settings = accuracy_settings(attack, params, eps, len(y), seed)
    entry = None if force else stored(store, run_id, "outcome", settings,
                                      usable=lambda e: len(e.get("attacked", "")) == len(y))
    if entry is not None:
        attacked, survived = unbits(entry["attacked"], y.device), unbits(entry["survived"], y.device)
        seconds = float(entry.get("seconds", 0.0))
    else:
        attacked = torch.zeros(len(y), dtype=torch.bool, device=y.device)
        survived = torch.zeros_like(attacked)
        seconds = 0.0
    todo = (need & ~attacked).nonzero().flatten()
    if todo.numel() == 0:
        return attacked, survived, 0
    started = time.perf_counter()
    survived[todo] = attack_survivors(model, objective, x[todo], y[todo], attack, eps, params, seed, batch_size,
                                      cancel, progress)
    attacked[todo] = True
    store_point(store, run_id, "outcome", settings, {"attacked": bits(attacked), "survived": bits(survived)},
                seconds + time.perf_counter() - started)
    return attacked, survived, int(todo.numel())


def accuracy_point(store, run_id: str, model, objective, x: torch.Tensor, y: torch.Tensor, attack: str,
                   params: dict[str, Any], eps: float, seed: int = 0, force: bool = False, cancel=None,
                   progress: Progress = None, batch_size: int | None = None) -> tuple[dict[str, Any], bool]:
    """Accuracy of one run under one attack alone at one ε: the share of samples classified correctly
    clean and still after the attack (ε = 0: the clean accuracy). An upper bound on the worst case.

    Returns (result, cached); the result dict holds kind "accuracy", run_id, attack, params, eps,
    samples, seed, accuracy, seconds (of the attack) and created, and is stored beside the per-sample
    outcome it was counted from. ``params`` must be validated (``engine.attacks.attack_params``).
    """
    settings = accuracy_settings(attack, params, eps, len(y), seed)
    hit = None if force else stored(store, run_id, "accuracy", settings, usable=lambda e: "accuracy" in e)
    if hit is not None:
        return hit, True
    started = time.perf_counter()
    clean = clean_outcome(store, run_id, model, objective, x, y, force, batch_size)
    if eps > 0:
        attacked, survived, _ = attack_outcome(store, run_id, model, objective, x, y, attack, params, eps, seed,
                                               clean, force, cancel, progress, batch_size)
        robust = clean & attacked & survived
    else:
        robust = clean
    result = store_accuracy(store, run_id, attack, params, eps, len(y), seed, float(robust.sum()) / max(len(y), 1),
                            time.perf_counter() - started)
    return result, False


def store_accuracy(store, run_id: str, attack: str, params: dict[str, Any], eps: float, samples: int, seed: int,
                   accuracy: float, seconds: float = 0.0) -> dict[str, Any]:
    """Store (and return) the summary entry of one attack's accuracy alone at one ε."""
    settings = accuracy_settings(attack, params, eps, samples, seed)
    known = stored(store, run_id, "accuracy", settings)
    if known is not None and known.get("accuracy") == float(accuracy):
        return known  # unchanged: keep the entry and the seconds it took
    return store_point(store, run_id, "accuracy", settings, {"accuracy": float(accuracy)}, seconds)


def robust_accuracy(model, objective, x: torch.Tensor, y: torch.Tensor, attack: str, eps: float,
                    params: dict | None = None, seed: int = 0, batch_size: int | None = None, cancel=None,
                    progress: Progress = None) -> float:
    """Accuracy under ``attack`` alone at ``eps`` without the store (ε = 0: the clean accuracy)."""
    from .attacks import attack_params

    result, _ = accuracy_point(None, "", model, objective, x, y, attack, attack_params(attack, params or {}), eps,
                               seed, cancel=cancel, progress=progress, batch_size=batch_size)
    return result["accuracy"]


def cached_point(store, run_id: str, kind: str, settings: dict[str, Any], device, force: bool,
                 compute: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], bool]:
    """The stored result of (run, kind, settings), or ``compute()`` run in a random stream of its own
    seeded by ``settings["seed"]`` (``engine.rng.private_rng``) and stored at once with the settings,
    seconds and time of creation. Returns (result, cached). ``compute`` must not open a private_rng."""
    return cached(store, run_id, kind, settings, compute, force=force,
                  context=lambda: private_rng(int(settings["seed"]), device))


# --- worst case over an ensemble ------------------------------------------------------------------
def member_label(attack: str, params: dict[str, Any], members: list[tuple[str, dict[str, Any]]]) -> str:
    """An ensemble member's name: the attack, with its parameters when the attack appears twice."""
    if sum(a == attack for a, _ in members) < 2:
        return attack
    return f"{attack} ({', '.join(f'{k}={v}' for k, v in sorted(params.items()))})"


def worst_case_point(store, run_id: str, model, objective, x, y, members: list[tuple[str, dict[str, Any]]],
                     eps: float, seed: int = 0, standalone: tuple[str, ...] = (), force: bool = False,
                     cancel=None, progress: Progress = None, batch_size: int | None = None) -> dict[str, Any]:
    """The per-sample worst case of one run at one ε over ``members`` (validated (attack, params) pairs),
    in order, each run only on the samples the earlier ones left unbroken, except the attacks named
    in ``standalone``, which run on every clean-correct sample (their accuracy alone is then known too).

    Returns {"eps", "accuracy" (share robust to every member), "broken_by" ({"clean": share wrong
    clean, member: share it broke first}), "alone" ({member: its accuracy alone, where known}),
    "computed" (samples attacked by this call), "samples", "seed", "robust" (the robust samples as a
    0/1 string)}.
    """
    clean = clean_outcome(store, run_id, model, objective, x, y, force, batch_size)
    n = max(len(y), 1)
    alive = clean.clone()
    broken_by = {"clean": float((~clean).sum()) / n}
    alone, computed = {}, 0
    for attack, params in members:
        label = member_label(attack, params, members)
        if eps <= 0:
            broken_by[label] = 0.0
            alone[label] = float(clean.sum()) / n
            continue
        need = clean if attack in standalone else alive
        attacked, survived, count = attack_outcome(store, run_id, model, objective, x, y, attack, params, eps, seed,
                                                   need, force, cancel, progress, batch_size)
        computed += count
        broken = attacked & ~survived
        broken_by[label] = float((alive & broken).sum()) / n
        if bool((clean & ~attacked).sum() == 0):
            alone[label] = float((clean & survived).sum()) / n
        alive &= ~broken
    return {"eps": float(eps), "accuracy": float(alive.sum()) / n, "broken_by": broken_by, "alone": alone,
            "computed": computed, "samples": len(y), "seed": int(seed), "robust": bits(alive)}


def cached_worst_case(store, run_id: str, samples: int, seed: int = 0,
                      attacks: set[str] | None = None) -> dict[float, dict[str, Any]]:
    """The worst case of one run at every ε over every ℓ∞ attack cached for it on these samples and seed
    (or only ``attacks``), from the store alone (never computes): {ε: {"accuracy", "attacks" (how
    many attack settings), "broken_by"}}. The union of everything tried is the tightest honest bound."""
    from .attacks import ATTACKS

    clean = stored(store, run_id, "clean", {"samples": int(samples)})
    if clean is None:
        return {}
    correct = unbits(clean["correct"])
    out: dict[float, dict[str, Any]] = {}
    by_eps: dict[float, list[dict]] = {}
    for entry in store.list_results(run_id, "outcome"):
        spec = ATTACKS.get(entry.get("attack"))
        if (spec is None or spec.budget != "linf" or entry.get("samples") != samples or entry.get("seed") != seed
                or (attacks is not None and entry["attack"] not in attacks)):
            continue
        by_eps.setdefault(float(entry["eps"]), []).append(entry)
    n = max(int(samples), 1)
    out[0.0] = {"accuracy": float(correct.sum()) / n, "attacks": 0, "broken_by": {"clean": float((~correct).sum()) / n}}
    for eps, entries in sorted(by_eps.items()):
        alive = correct.clone()
        broken_by: dict[str, float] = {"clean": float((~correct).sum()) / n}
        for entry in entries:
            broken = unbits(entry["attacked"]) & ~unbits(entry["survived"])
            label = entry["attack"]
            broken_by[label] = broken_by.get(label, 0.0) + float((alive & broken).sum()) / n
            alive &= ~broken
        out[eps] = {"accuracy": float(alive.sum()) / n, "attacks": len(entries), "broken_by": broken_by}
    return out


# --- inputs of an evaluation ----------------------------------------------------------------------
def validate_eps(attack: str, eps) -> list[float]:
    """The ε grid of a sweep, parsed ("0,0.05,0.1" or numbers), checked against the attack's budget,
    sorted and without duplicates."""
    from . import attacks
    from .objectives import ConfigError

    if isinstance(eps, str):
        try:
            eps = [float(e) for e in eps.replace(" ", "").split(",") if e]
        except ValueError:
            raise ConfigError(f"eps must be comma-separated numbers; got {eps!r}") from None
    values = sorted(set(float(e) for e in eps))
    if not values:
        raise ConfigError("eps: give at least one value")
    attacks.validate_budget(attack, values)
    return values


# --- sweeps as background work ---------------------------------------------------------------------
def load_for_evaluation(store, run_ids: list[str], samples: int | None, device="cpu", data_dir=None):
    """The stored runs (model, objective, record) and the first ``samples`` test points of their dataset
    (None: the whole test split), on ``device``. Every run must be on the same dataset."""
    from .data import load_dataset
    from .objectives import ConfigError
    from .train import load_run

    if not run_ids:
        raise ConfigError("runs: choose at least one stored run")
    missing = [r for r in run_ids if not store.has_run(r)]
    if missing:
        raise ConfigError(f"runs: no stored run {missing[0]!r}; `python -m engine runs` lists them")
    with private_rng(0, device):  # building a model draws its (overwritten) initial weights
        loaded = {r: load_run(store, r, device) for r in run_ids}
    datasets = sorted({record["dataset"] for _, _, record in loaded.values()})
    if len(datasets) > 1:
        raise ConfigError(f"runs: all runs of one evaluation must share a dataset; got {', '.join(datasets)}")
    data = load_dataset(datasets[0], data_dir=data_dir)
    n = len(data.y_test) if samples is None else max(1, min(int(samples), len(data.y_test)))
    return loaded, data.x_test[:n].to(device), data.y_test[:n].to(device)


