"""The persistent store (diskcache): runs, checkpoints, metrics histories and latents.

Layout, one diskcache ``Cache`` in one folder:
    run:<id>          the run record (settings, metrics history, final metrics, timing): a plain dict
    ckpt:<id>         the state dicts, as ``torch.save`` bytes (loaded back with weights_only=True)
    latents:<id>      final test latents and labels (numpy) and a thinned history of snapshots
    result:<id>:<kind>:<hash>   one cached evaluation of run <id> (a dict with a "kind": "accuracy" for
                      robust accuracy at one ε, "shift" for attacked latents, or a measure's name)
A run is written in one transaction, record last, so a reader never sees half a run and a failed
or cancelled job leaves the store exactly as it was.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import diskcache
import torch

STORE_ENV = "SIMPLEX_STORE"


def default_store_dir() -> Path:
    """``$SIMPLEX_STORE`` if set, else ``~/.cache/simplex-workbench/store``."""
    env = os.environ.get(STORE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "simplex-workbench" / "store"


class RunStore:
    """Stored runs keyed by the stable hash of their settings (``engine.config.TrainConfig.run_id``)."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else default_store_dir()
        self.path.mkdir(parents=True, exist_ok=True)
        self.cache = diskcache.Cache(str(self.path), size_limit=2**40)  # never evict a run silently

    def has_run(self, run_id: str) -> bool:
        return f"run:{run_id}" in self.cache

    def save_run(self, record: dict[str, Any], checkpoint: dict[str, Any], latents: dict[str, Any]) -> None:
        run_id = record["run_id"]
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        with self.cache.transact():
            self.cache.set(f"ckpt:{run_id}", buffer.getvalue())
            self.cache.set(f"latents:{run_id}", latents)
            self.cache.set(f"run:{run_id}", record)

    def get_run(self, run_id: str) -> dict[str, Any]:
        record = self.cache.get(f"run:{run_id}")
        if record is None:
            raise KeyError(f"run {run_id!r} is not in the store at {self.path}")
        return record

    def load_checkpoint(self, run_id: str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
        blob = self.cache.get(f"ckpt:{run_id}")
        if blob is None:
            raise KeyError(f"run {run_id!r} has no checkpoint in the store at {self.path}")
        return torch.load(io.BytesIO(blob), map_location=map_location, weights_only=True)

    def checkpoint_bytes(self, run_id: str) -> bytes:
        return self.cache[f"ckpt:{run_id}"]

    def get_latents(self, run_id: str) -> dict[str, Any]:
        return self.cache.get(f"latents:{run_id}") or {}

    def get_result(self, key: str) -> Any:
        """A cached evaluation result (e.g. robust accuracy of a run under an attack at one ε), or None.
        Keys come from ``engine.robustness.result_key``."""
        return self.cache.get(f"result:{key}")

    def put_result(self, key: str, value: Any) -> None:
        self.cache.set(f"result:{key}", value)

    def list_results(self, run_id: str, kind: str | None = None) -> list[dict[str, Any]]:
        """Every cached result of one run (optionally of one kind), oldest first."""
        prefix = f"result:{run_id}:" + (f"{kind}:" if kind else "")
        values = [self.cache.get(key) for key in self.cache.iterkeys() if str(key).startswith(prefix)]
        # entries of an older layout (a bare float) are skipped: the next sweep recomputes them
        return sorted((v for v in values if isinstance(v, dict)), key=lambda v: v.get("created", 0))

    def list_runs(self) -> list[dict[str, Any]]:
        """All run records, newest first."""
        records = [self.cache.get(key) for key in self.cache.iterkeys() if str(key).startswith("run:")]
        return sorted((r for r in records if r is not None), key=lambda r: r.get("created", 0), reverse=True)

    def delete_run(self, run_id: str) -> bool:
        with self.cache.transact():
            found = self.cache.delete(f"run:{run_id}")
            self.cache.delete(f"ckpt:{run_id}")
            self.cache.delete(f"latents:{run_id}")
            for key in [k for k in self.cache.iterkeys() if str(k).startswith(f"result:{run_id}:")]:
                self.cache.delete(key)
        return bool(found)

    def close(self) -> None:
        self.cache.close()
