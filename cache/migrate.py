"""``python -m engine store migrate``: convert a store of the older format (diskcache's pickled rows)
into the current one, once.

The old rows are read with an unpickler that resolves no global but numpy's array and dtype
constructors and torch's version string (``SAFE_GLOBALS``), so even a crafted old store runs no code;
checkpoints are read with ``torch.load(weights_only=True)``. The converted store is written beside
the old one through the store's own API (every record, blob and result re-encoded and checksummed),
then put in its place; the old folder is kept as ``<name>.format1`` until you delete it.
"""
from __future__ import annotations

import io
import pickle
import shutil
import sqlite3
from pathlib import Path
from typing import Any

from diskcache.core import MODE_BINARY, MODE_PICKLE, MODE_RAW

from . import DB_NAME, FORMAT_KEY, RunStore, StoreError

SAFE_GLOBALS = {("numpy", "dtype"), ("numpy._core.numeric", "_frombuffer"), ("numpy.core.numeric", "_frombuffer"),
                ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy._core.multiarray", "scalar"), ("numpy.core.multiarray", "scalar"),
                ("torch.torch_version", "TorchVersion")}


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in SAFE_GLOBALS:
            raise pickle.UnpicklingError(f"refused {module}.{name}: an old store holds only plain containers, "
                                         f"numbers, strings and numpy arrays")
        if (module, name) == ("torch.torch_version", "TorchVersion"):
            return str
        return super().find_class(module, name)


def migrate_store(path: str | Path) -> dict[str, Any]:
    """Convert the store at ``path``; returns what was converted. Raises StoreError when it is not a
    store of the older format or a row cannot be read safely (the old store is then left untouched)."""
    path = Path(path).expanduser()
    db = path / DB_NAME
    if not db.is_file():
        raise StoreError(f"no store index at {db}: nothing to migrate")
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT key, raw, mode, filename, value FROM Cache ORDER BY key").fetchall()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"the store index {db} cannot be read ({exc})") from None
    finally:
        con.close()
    if any(key == FORMAT_KEY for key, *_ in rows):
        return {"store": str(path), "migrated": False, "reason": "already in the current format"}
    values = {key: _old_value(path, key, raw, mode, filename, value) for key, raw, mode, filename, value in rows}
    target = path.with_name(path.name + ".migrating")
    backup = path.with_name(path.name + ".format1")
    if backup.exists():
        raise StoreError(f"{backup} exists (an earlier migration's backup): move it away first")
    shutil.rmtree(target, ignore_errors=True)
    store = RunStore(target)
    runs = sorted(k[len("run:"):] for k in values if k.startswith("run:"))
    results = 0
    for run_id in runs:
        import torch

        checkpoint = torch.load(io.BytesIO(values[f"ckpt:{run_id}"]), map_location="cpu", weights_only=True)
        store.save_run(values[f"run:{run_id}"], checkpoint, values.get(f"latents:{run_id}") or {})
        for key in (k for k in values if k.startswith(f"result:{run_id}:")):
            if isinstance(values[key], dict):  # an older layout's bare float was skipped then too
                store.put_result(key[len("result:"):], values[key])
                results += 1
    store.close()
    path.rename(backup)
    target.rename(path)
    return {"store": str(path), "migrated": True, "runs": len(runs), "results": results, "backup": str(backup)}


def _old_value(path: Path, key, raw, mode, filename, value) -> Any:
    if not raw or not isinstance(key, str):
        raise StoreError(f"the old store holds a row with a pickled key ({key!r:.60}): not migrated, nothing changed")
    if mode == MODE_BINARY or mode == MODE_PICKLE and value is None:
        file = (path / str(filename)).resolve()
        if not file.is_relative_to(path.resolve()):
            raise StoreError(f"the old store's row {key!r} names a file outside it: not migrated, nothing changed")
        data = file.read_bytes()
    else:
        data = bytes(value) if isinstance(value, (bytes, memoryview)) else value
    if mode in (MODE_RAW, MODE_BINARY):
        return data
    if mode == MODE_PICKLE:
        try:
            return RestrictedUnpickler(io.BytesIO(data)).load()
        except Exception as exc:  # a refused global or garbled bytes: the row is not converted
            raise StoreError(f"the old store's row {key!r} cannot be read safely ({exc}): not migrated, nothing "
                             f"changed") from None
    raise StoreError(f"the old store's row {key!r} has mode {mode}, which the old format never wrote")
