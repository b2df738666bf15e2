"""Cached evaluation points: how one evaluation of one run is named in the store, read, and computed
once. Every cached number of the workbench goes through here (clean decisions, attack outcomes,
accuracies, latents under attack, measures), so each is keyed, stamped and timed the same way.

A point is named by (run id, kind, settings): its key is ``<run>:<kind>:<stable hash of settings>``
(``result_key``). ``stable_hash`` is also what names a run (``engine.config.settings_hash``): the
canonical JSON of the value, which must hold JSON's own types only, so a key never depends on how a
Python object happens to print.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
from typing import Any, Callable, ContextManager


class UnstableValue(TypeError):
    """A value that has no stable canonical form (a set, an object, a NaN, a non-text key)."""


def _canonical(value: Any, path: str) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UnstableValue(f"{path}: must be a finite number; got {value!r}")
        return value
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _canonical(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v, f"{path}[{i}]") for i, v in enumerate(value)]
    raise UnstableValue(f"{path}: settings hold only numbers, text, true/false, lists and tables; got "
                        f"{type(value).__name__} {value!r}")


def stable_hash(value: Any, path: str = "settings") -> str:
    """16 hex digits of the sha256 of ``value``'s canonical JSON (sorted keys, no spaces)."""
    canonical = json.dumps(_canonical(value, path), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def result_key(run_id: str, kind: str, settings: dict[str, Any]) -> str:
    """The store key of one evaluation of one run: ``<run>:<kind>:<hash of everything that shapes it>``."""
    return f"{run_id}:{kind}:{stable_hash(settings)}"


def stored(store, run_id: str, kind: str, settings: dict[str, Any],
           usable: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any] | None:
    """The cached point, or None: no store, not cached, unreadable, from another checkpoint than the
    run's (``RunStore.get_result``), or not ``usable`` (e.g. computed on another number of samples)."""
    if store is None:
        return None
    value = store.get_result(result_key(run_id, kind, settings))
    return value if isinstance(value, dict) and (usable is None or usable(value)) else None


def store_point(store, run_id: str, kind: str, settings: dict[str, Any], values: dict[str, Any],
                seconds: float = 0.0) -> dict[str, Any]:
    """Write one point: ``{"kind", "run_id", **settings, **values, "seconds", "created"}``, stamped
    with the run's checkpoint digest by the store; returns it as stored (unstored when ``store`` is None)."""
    point = {"kind": kind, "run_id": run_id, **settings, **values, "seconds": seconds, "created": time.time()}
    return point if store is None else store.put_result(result_key(run_id, kind, settings), point)


def cached(store, run_id: str, kind: str, settings: dict[str, Any], compute: Callable[[], dict[str, Any]], *,
           force: bool = False, usable: Callable[[dict[str, Any]], bool] | None = None,
           context: Callable[[], ContextManager] | None = None) -> tuple[dict[str, Any], bool]:
    """The cached point of (run, kind, settings), or ``compute()`` stored at once with the settings and
    the seconds it took. ``context()`` wraps the computation (the evaluation's own random stream,
    ``engine.rng.private_rng``). ``force`` recomputes and replaces. Returns (point, was cached)."""
    if not force:
        hit = stored(store, run_id, kind, settings, usable)
        if hit is not None:
            return hit, True
    started = time.perf_counter()
    with (context or contextlib.nullcontext)():
        values = compute()
    return store_point(store, run_id, kind, settings, values, time.perf_counter() - started), False
