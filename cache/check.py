"""``python -m engine store check [--repair]``: verify every row and file of a store.

The check reads every row of the index through the store's own decoding (nothing is unpickled),
verifies each checksum and each run's blobs against the digests its record holds, and lists what is
damaged, rows the store did not write, results computed from another checkpoint (stale), and value
files no row refers to (orphans: a write killed between its value file and its commit).
``--repair`` moves every damaged run's rows and every refused row, as raw bytes never decoded, into
``quarantine/<time>/`` inside the store, deletes stale results and orphaned files, and leaves a
store whose check is clean. A missing, emptied, damaged or replaced index is set aside the same way,
with every value file, and an empty store starts in its place. Run it while nothing else writes to
the store: a value file being written at that moment looks like an orphan.
"""
from __future__ import annotations

import json
import re
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

from . import DB_NAME, MARKER_NAME, RunStore, StoreCorrupt, StoreError, codec, value_files
from .disk import RowRefused

RUN_ROWS = ("summary", "run", "ckpt", "latents")


def check_store(path: str | Path, repair: bool = False) -> dict[str, Any]:
    """The check's report (a JSON-able dict); with ``repair``, also what was set aside or deleted."""
    path = Path(path).expanduser()
    try:
        store = RunStore(path)
    except StoreCorrupt as exc:
        if exc.what != "index":
            raise
        report = {"store": str(path), "clean": False, "index": str(exc), "runs": 0, "intact": 0, "damaged": [],
                  "refused_rows": [], "stale_results": 0,
                  "orphaned_files": [str(p.relative_to(path)) for p in value_files(path)]}
        if repair:
            report["repaired"] = _set_index_aside(path)
        return report
    try:
        return _check(store, repair)
    finally:
        store.close()


def _check(store: RunStore, repair: bool) -> dict[str, Any]:
    rows = store._query("SELECT rowid, key, raw, mode, filename, value FROM Cache", ())
    referenced = {r[4] for r in rows if isinstance(r[4], str)}
    runs: dict[str, dict[str, Any]] = {}
    refused, stale = [], []
    for rowid, key, raw, mode, filename, value in rows:
        kind, _, rest = key.partition(":") if isinstance(key, str) else ("", "", "")
        if kind == "store":
            continue
        run_id = rest.split(":", 1)[0] if kind in RUN_ROWS or kind in ("result", "derived", "note") else None
        try:
            data = store._bytes((key, raw, mode, filename, value))
            decoded = codec.decode(data)
        except (RowRefused, codec.CodecError, OSError) as exc:
            if run_id is None:
                refused.append({"rowid": rowid, "key": repr(key)[:80], "reason": str(exc)})
            else:
                runs.setdefault(run_id, {"rows": [], "bad": []})["bad"].append(f"{kind}: {exc}")
                runs[run_id]["rows"].append(rowid)
            continue
        if kind == "study":
            continue  # a study's definition and results: read and checked by engine.studies
        if run_id is None:
            refused.append({"rowid": rowid, "key": repr(key)[:80], "reason": "a key this store does not write"})
            continue
        entry = runs.setdefault(run_id, {"rows": [], "bad": []})
        entry["rows"].append(rowid)
        if kind == "result":
            entry.setdefault("results", []).append((rowid, decoded))
        elif kind in ("derived", "note"):
            continue  # bookkeeping of its results (derived again when stale), and the user's note on it
        else:
            entry[kind] = decoded
            entry[f"{kind}-digest"] = codec.body_digest(data)
    damaged = []
    for run_id, entry in sorted(runs.items()):
        bad = list(entry["bad"])
        missing = [k for k in RUN_ROWS if k not in entry and not any(b.startswith(f"{k}:") for b in bad)]
        if missing:
            bad.append(("the run has only cached results, no " if len(missing) == len(RUN_ROWS) else "missing: ")
                       + ", ".join(missing))
        record, summary = entry.get("run"), entry.get("summary")
        blobs = (record or summary or {}).get("blobs", {}) if isinstance(record or summary, dict) else {}
        for name, kind in (("checkpoint", "ckpt"), ("latents", "latents")):
            if f"{kind}-digest" in entry and blobs.get(name) != entry[f"{kind}-digest"]:
                bad.append(f"{name}: its checksum is not the one its record holds")
        if record is not None and summary is not None and record.get("blobs") != summary.get("blobs"):
            bad.append("record and summary disagree")
        if bad:
            damaged.append({"run": run_id, "what": bad, "rows": entry["rows"]})
            continue
        for rowid, result in entry.get("results", []):
            if not isinstance(result, dict) or result.get("checkpoint") != blobs.get("checkpoint"):
                stale.append(rowid)
    orphans = [p for p in value_files(store.path) if str(p.relative_to(store.path)) not in referenced]
    damaged_ids = {d["run"] for d in damaged}
    report = {"store": str(store.path), "runs": len(runs),
              "intact": sum(1 for run_id in runs if run_id not in damaged_ids),
              "damaged": [{"run": d["run"], "what": d["what"]} for d in damaged],
              "refused_rows": [{k: v for k, v in r.items() if k != "rowid"} for r in refused],
              "stale_results": len(stale),
              "orphaned_files": [str(p.relative_to(store.path)) for p in orphans],
              "orphaned_bytes": sum(p.stat().st_size for p in orphans)}
    report["clean"] = not (damaged or refused or stale or orphans)
    if repair and not report["clean"]:
        report["repaired"] = _repair(store, damaged, [r["rowid"] for r in refused], stale, orphans)
    return report


def _repair(store: RunStore, damaged: list[dict], refused: list[int], stale: list[int],
            orphans: list[Path]) -> dict[str, Any]:
    """Quarantine damaged runs and refused rows (raw bytes), delete stale results and orphans."""
    quarantine = store.path / "quarantine" / time.strftime("%Y%m%d-%H%M%S")
    aside = [rowid for d in damaged for rowid in d["rows"]] + refused
    db = store.path / DB_NAME
    con = sqlite3.connect(str(db), timeout=60, isolation_level=None)
    files = []
    try:
        con.execute("BEGIN IMMEDIATE")
        if aside:
            quarantine.mkdir(parents=True, exist_ok=True)
        index = []
        for rowid in aside:
            row = con.execute("SELECT key, raw, mode, filename, value FROM Cache WHERE rowid = ?", (rowid,)).fetchone()
            if row is None:
                continue
            key, raw, mode, filename, value = row
            name = f"row{rowid}-" + re.sub(r"[^A-Za-z0-9_.-]", "_", str(key) if isinstance(key, str) else "key")[:80]
            if value is not None:
                (quarantine / name).write_bytes(bytes(value) if not isinstance(value, str) else value.encode())
            source = store.path / filename if isinstance(filename, str) else None
            if source is not None and source.is_file() and source.resolve().is_relative_to(store.path.resolve()):
                shutil.copyfile(source, quarantine / (name + ".val"))
                files.append(source)
            index.append({"rowid": rowid, "key": repr(key)[:200], "raw": raw, "mode": mode, "file": name})
            con.execute("DELETE FROM Cache WHERE rowid = ?", (rowid,))
        for rowid in stale:
            row = con.execute("SELECT filename FROM Cache WHERE rowid = ?", (rowid,)).fetchone()
            if row and isinstance(row[0], str):
                files.append(store.path / row[0])
            con.execute("DELETE FROM Cache WHERE rowid = ?", (rowid,))
        if index:
            (quarantine / "rows.json").write_text(json.dumps(index, indent=1))
        con.execute("COMMIT")
    except BaseException:
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise
    finally:
        con.close()
    for file in files + orphans:
        file.unlink(missing_ok=True)
    return {"quarantined_runs": [d["run"] for d in damaged], "quarantined_rows": len(aside),
            "quarantine": str(quarantine) if aside else None, "deleted_stale_results": len(stale),
            "deleted_orphaned_files": len(orphans)}


def _set_index_aside(path: Path) -> dict[str, Any]:
    """Move a missing/emptied/damaged/replaced index, its marker and every value file into quarantine."""
    quarantine = path / "quarantine" / time.strftime("%Y%m%d-%H%M%S")
    quarantine.mkdir(parents=True, exist_ok=True)
    moved = 0
    for item in [path / DB_NAME, path / f"{DB_NAME}-wal", path / f"{DB_NAME}-shm", path / MARKER_NAME]:
        if item.exists():
            shutil.move(str(item), str(quarantine / item.name))
    for file in value_files(path):
        target = quarantine / "values" / file.relative_to(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(file), str(target))
        moved += 1
    try:
        RunStore(path)
    except StoreError as exc:  # pragma: no cover - the folder was just emptied of everything it checks
        raise StoreError(f"the store at {path} could not be reset: {exc}") from None
    return {"quarantine": str(quarantine), "moved_value_files": moved, "index_set_aside": True}
