"""The persistent store: runs, checkpoints, latents and cached evaluations, in one diskcache folder.

Rows of the index (``cache.db``), every value encoded by ``cache.codec`` (JSON and raw array bytes
behind a sha256; nothing is ever unpickled) and read through ``cache.disk.StoreDisk``:
    store:format      {"format": 2, "id": ...}; the same id is in ``simplex-store.json`` beside it
    summary:<id>      the run record without its per-epoch history: what listings read
    run:<id>          the whole run record, with ``blobs``: the sha256 of its checkpoint and latents
    ckpt:<id>         the state dicts (tensors)
    latents:<id>      final test latents and labels, and a thinned history of snapshots
    result:<id>:<kind>:<hash>   one cached evaluation of run <id>, stamped with the checkpoint digest
                      it was computed from ("clean", "outcome", "accuracy", "shift", a measure's name)
    derived:<id>      values derived from run <id>'s results (its worst case) and a stamp; every result
                      written replaces it, so listings read it instead of recomposing what still holds
    study:<name>      a study's definition and its cells' per-run values (engine.studies)
    note:<id>         what the user wrote about run <id>: a name, tags and notes (the Runs page)
A run is written in one transaction, record last, so a reader never sees half a run and a failed or
cancelled job leaves the store exactly as it was. Reads go through a read-only connection of their
own: opening a store and reading from it write nothing (a full disk still lists and loads).
Listings are range queries on the index's key order: runs through their summaries, a run's results
through its own key prefix; nothing scans the whole store.
"""
from __future__ import annotations

import contextlib
import errno
import gc
import json
import os
import sqlite3
import threading
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

from . import codec
from .disk import MIN_FILE_SIZE, RowRefused, StoreDisk

STORE_ENV = "SIMPLEX_STORE"
FORMAT = 2
DB_NAME = "cache.db"
MARKER_NAME = "simplex-store.json"
FORMAT_KEY = "store:format"
CHECK_COMMAND = "python -m engine store check"


@contextlib.contextmanager
def _collector_paused():
    """Decoding thousands of rows allocates hundreds of thousands of objects and no cycles: Python's
    cycle collector would walk the growing heap again and again (a quarter of a 10,000-run listing)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class StoreError(Exception):
    """The store cannot do what was asked; the message says what and what to do about it."""


class StoreCorrupt(StoreError):
    """Part of the store is damaged: ``run_id`` (None for the index itself) and ``what`` name it."""

    def __init__(self, message: str, run_id: str | None = None, what: str | None = None):
        super().__init__(message)
        self.run_id, self.what = run_id, what


class StoreFull(StoreError):
    """The disk holding the store is full; nothing of the write that failed was stored."""


class Listing(list):
    """A list of what could be read, with ``problems``: one line per entry that could not."""

    def __init__(self, items=(), problems: list[str] | None = None):
        super().__init__(items)
        self.problems = problems or []


def problems_message(problems: list[str], noun: str = "run") -> str:
    """'1 run could not be read: …; `python -m engine store check` …' (empty when no problems)."""
    if not problems:
        return ""
    count = f"{len(problems)} {noun}{'s' * (len(problems) != 1)}"
    return (f"{count} could not be read and {'is' if len(problems) == 1 else 'are'} left out: "
            f"{'; '.join(problems[:5])}{' …' if len(problems) > 5 else ''}. Run `{CHECK_COMMAND}` to list the "
            f"damage, and `{CHECK_COMMAND} --repair` to set it aside.")


def default_store_dir() -> Path:
    """``$SIMPLEX_STORE`` if set, else ``~/.cache/simplex-workbench/store``."""
    env = os.environ.get(STORE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "simplex-workbench" / "store"


def prefix_range(prefix: str) -> tuple[str, str]:
    """The key range [lo, hi) of every key that starts with ``prefix`` (keys are compared as text)."""
    return prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)


def value_files(path: Path) -> list[Path]:
    """diskcache's value files under ``path`` (two levels of two-hex-digit folders)."""
    return sorted(path.glob("[0-9a-f][0-9a-f]/[0-9a-f][0-9a-f]/*.val"))


def _is_full(exc: BaseException) -> bool:
    return (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)) or \
        (isinstance(exc, sqlite3.Error) and "full" in str(exc).lower())


class RunStore:
    """Stored runs keyed by the stable hash of their settings (``engine.config.TrainConfig.run_id``).

    Opening checks what the folder holds and raises StoreError (StoreCorrupt) with what to do when it
    is not a store of this format: a file, a store of the older pickled format (``store migrate``),
    an index that is damaged, missing, emptied or replaced beside the value files it indexed."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path).expanduser() if path is not None else default_store_dir()
        if self.path.exists() and not self.path.is_dir():
            raise StoreError(f"the store path {self.path} is a file, not a folder: name a folder (it is created "
                             f"when missing)")
        self.disk = StoreDisk(str(self.path))
        self._lock = threading.RLock()
        self._reader: sqlite3.Connection | None = None
        self._reader_pid: int | None = None
        self._writer = None
        self._derived_memo: tuple[Any, dict[str, Any]] | None = None
        self._listing_memo: tuple[Any, list[dict[str, Any]], list[str]] | None = None
        self._inspect()

    # --- opening -----------------------------------------------------------------------------------
    def _inspect(self) -> None:
        db = self.path / DB_NAME
        marker = self._marker()
        if not db.exists() or db.stat().st_size == 0:
            orphans = value_files(self.path) if self.path.is_dir() else []
            if orphans or marker:
                state = "missing" if not db.exists() else "empty"
                raise StoreCorrupt(f"the store's index {db} is {state}, but the folder {self.path} holds "
                                   f"{len(orphans)} value file(s) of stored runs: without the index the runs "
                                   f"cannot be found. Restore {DB_NAME} from a backup, or run `{CHECK_COMMAND} "
                                   f"--repair` to set the value files aside and start an empty store.", what="index")
            return  # a new, empty store: the first write creates it
        try:
            rows = self._row(FORMAT_KEY)
            count = None if rows else self._query("SELECT count(*) FROM Cache", ())[0][0]
        except sqlite3.DatabaseError as exc:
            raise StoreCorrupt(f"the store's index {db} is damaged ({exc}); nothing can be read from it. Restore it "
                               f"from a backup, or move the folder {self.path} aside and start a new store.",
                               what="index") from None
        if not rows:
            if count:
                raise StoreError(f"the store at {self.path} is in the older format that pickled its rows, which "
                                 f"this version never reads (a pickle can run code). If you trust where it came "
                                 f"from, convert it once with `python -m engine store migrate` (it reads the old "
                                 f"rows with an unpickler that accepts only plain containers and numpy arrays).")
            if value_files(self.path) or marker:
                raise StoreCorrupt(f"the store's index {db} was emptied, but the folder {self.path} still holds "
                                   f"value files of stored runs. Restore {DB_NAME} from a backup, or run "
                                   f"`{CHECK_COMMAND} --repair` to set them aside.", what="index")
            return
        try:
            info = self._decode(rows[0])
        except (RowRefused, codec.CodecError, OSError) as exc:
            raise StoreCorrupt(f"the store's index {db} is damaged (its format row: {exc})", what="index") from None
        if not isinstance(info, dict) or info.get("format") != FORMAT:
            raise StoreError(f"the store at {self.path} has format {info.get('format') if isinstance(info, dict) else '?'}"
                             f"; this version reads format {FORMAT}")
        if marker and marker.get("id") != info.get("id"):
            raise StoreCorrupt(f"the store's index {db} was replaced: it belongs to another store (id "
                               f"{info.get('id')}, while {MARKER_NAME} says {marker.get('id')}). Put the index "
                               f"back, or run `{CHECK_COMMAND} --repair` to set it and the value files aside and "
                               f"start an empty store.", what="index")

    def _marker(self) -> dict[str, Any] | None:
        try:
            value = json.loads((self.path / MARKER_NAME).read_text())
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else {"id": None}

    # --- reading: a read-only connection, rows decoded by StoreDisk and cache.codec -------------------
    def _query(self, sql: str, params: tuple) -> list[tuple]:
        with self._lock:
            if self._reader is None or self._reader_pid != os.getpid():
                db = self.path / DB_NAME
                if not db.exists():
                    return []
                self._reader = sqlite3.connect(f"file:{quote(str(db))}?mode=ro", uri=True, timeout=60,
                                               isolation_level=None, check_same_thread=False)
                self._reader_pid = os.getpid()
                # data_version counts per connection: memos keyed on another connection's mean nothing
                self._listing_memo = self._derived_memo = None
            return self._reader.execute(sql, params).fetchall()

    def _rows(self, prefix: str) -> list[tuple]:
        lo, hi = prefix_range(prefix)
        return self._query("SELECT key, raw, mode, filename, value FROM Cache WHERE key >= ? AND key < ? "
                           "ORDER BY key", (lo, hi))

    def _row(self, key: str) -> list[tuple]:
        """The index row of ``key`` (an empty list when absent), as ``_decode`` takes it."""
        return self._query("SELECT key, raw, mode, filename, value FROM Cache WHERE key = ?", (key,))

    def _bytes(self, row: tuple) -> bytes:
        """The stored bytes of a row, through StoreDisk (which refuses what this store did not write)."""
        key, raw, mode, filename, value = row
        self.disk.get(key, raw)
        return self.disk.fetch(mode, filename, value, False)

    def _decode(self, row: tuple) -> Any:
        return codec.decode(self._bytes(row))

    def _try_decode(self, row: tuple) -> tuple[Any, Exception | None]:
        """(value, None), or (None, why) when the row cannot be read."""
        try:
            return self._decode(row), None
        except (RowRefused, codec.CodecError, OSError) as exc:
            return None, exc

    @staticmethod
    def _damaged(run_id: str | None, what: str, exc: Exception, label: str | None = None) -> StoreCorrupt:
        """The error for a part of a run that cannot be read; ``label`` names it in the message."""
        return StoreCorrupt(f"{label or what} of run {run_id} is damaged ({exc}); nothing is computed from it. "
                            f"Run `{CHECK_COMMAND}`, and retrain the run (train --force) or set it aside with "
                            f"--repair.", run_id, what)

    def _read(self, key: str, run_id: str | None, what: str) -> Any:
        """The value under ``key`` (None when absent). Raises StoreCorrupt when it cannot be read."""
        try:
            rows = self._row(key)
        except sqlite3.DatabaseError as exc:
            raise StoreCorrupt(f"the store's index {self.path / DB_NAME} is damaged ({exc})", what="index") from None
        if not rows:
            return None
        try:
            return self._decode(rows[0])
        except (RowRefused, codec.CodecError, OSError) as exc:
            raise self._damaged(run_id, what, exc) from None

    def _summary(self, run_id: str) -> dict[str, Any] | None:
        return self._read(f"summary:{run_id}", run_id, "the record")

    def keys(self) -> list[str]:
        """Every key of the store's contents (runs, blobs, results), in key order."""
        return [k for (k,) in self._query("SELECT key FROM Cache WHERE raw = 1 ORDER BY key", ())
                if isinstance(k, str) and not k.startswith("store:")]

    def has_run(self, run_id: str) -> bool:
        return bool(self._query("SELECT 1 FROM Cache WHERE key = ?", (f"summary:{run_id}",)))

    def get_run(self, run_id: str) -> dict[str, Any]:
        record = self._read(f"run:{run_id}", run_id, "the record")
        if record is None:
            raise KeyError(f"run {run_id!r} is not in the store at {self.path}")
        return record

    def _blob(self, run_id: str, name: str, key: str) -> Any:
        """A run's checkpoint or latents, verified against the digest its record holds."""
        summary = self._summary(run_id)
        if summary is None:
            raise KeyError(f"run {run_id!r} is not in the store at {self.path}")
        rows = self._row(key)
        if not rows:
            raise StoreCorrupt(f"the {name} of run {run_id} is missing from the store at {self.path}; run "
                               f"`{CHECK_COMMAND}`", run_id, name)
        try:
            data = self._bytes(rows[0])
            found = codec.body_digest(data)
            if found != summary["blobs"][name]:
                raise codec.CodecError(f"its checksum {found[:12]}… is not the {summary['blobs'][name][:12]}… its "
                                       f"record holds")
            return codec.decode(data)
        except (RowRefused, codec.CodecError, OSError) as exc:
            raise self._damaged(run_id, name, exc, f"the {name}") from None

    def load_checkpoint(self, run_id: str, map_location=None) -> dict[str, Any]:
        """The run's state dicts (torch tensors on the CPU, or on ``map_location``)."""
        state = self._blob(run_id, "checkpoint", f"ckpt:{run_id}")
        if map_location is not None and str(map_location) != "cpu":
            state = _to_device(state, map_location)
        return state

    def checkpoint_digest(self, run_id: str) -> str:
        summary = self._summary(run_id)
        if summary is None:
            raise KeyError(f"run {run_id!r} is not in the store at {self.path}")
        return summary["blobs"]["checkpoint"]

    def checkpoint_bytes(self, run_id: str) -> bytes:
        """The verified checkpoint as ``torch.save`` bytes, for download (load with weights_only=True)."""
        import io

        import torch

        buffer = io.BytesIO()
        torch.save(self.load_checkpoint(run_id), buffer)
        return buffer.getvalue()

    def get_latents(self, run_id: str) -> dict[str, Any]:
        return self._blob(run_id, "latents", f"latents:{run_id}") or {}

    def list_runs(self) -> Listing:
        """Every run's summary (its record without the per-epoch history; ``get_run`` has it), newest
        first. Entries that cannot be read are left out and named in ``.problems``."""
        try:
            version = self._query("PRAGMA data_version", ())
            if self._listing_memo is None or self._listing_memo[0] != version:
                records, problems = [], []
                with _collector_paused():
                    rows = [(row, self._try_decode(row)) for row in self._rows("summary:")]
                for row, (value, exc) in rows:
                    if exc is None:
                        records.append(value)
                    else:
                        problems.append(f"{str(row[0])[len('summary:'):]} ({exc})")
                records.sort(key=lambda r: r.get("created", 0), reverse=True)
                self._listing_memo = (version, records, problems)
        except sqlite3.DatabaseError as exc:
            raise StoreCorrupt(f"the store's index {self.path / DB_NAME} is damaged ({exc})", what="index") from None
        # decoded once per change of the index (as _all_derived); copies, so a caller cannot alter the memo
        _, records, problems = self._listing_memo
        return Listing([dict(r) for r in records], list(problems))

    # --- cached evaluations ------------------------------------------------------------------------
    def get_result(self, key: str) -> Any:
        """A cached evaluation (keys from ``cache.points.result_key``: "<run>:<kind>:<hash>"), or
        None when absent, unreadable, or computed from another checkpoint than the run's."""
        run_id = key.split(":", 1)[0]
        try:
            value, digest = self._read(f"result:{key}", run_id, "a cached result"), self.checkpoint_digest(run_id)
        except (StoreCorrupt, KeyError):
            return None
        return value if isinstance(value, dict) and value.get("checkpoint") == digest else None

    def put_result(self, key: str, value: dict[str, Any]) -> dict[str, Any]:
        """Cache one evaluation of a stored run, stamped with the run's checkpoint digest; what was
        derived from the run's results is dropped in the same transaction (``derived``). Returns the
        value as stored (with its "checkpoint"), which is what a later read gives."""
        run_id = key.split(":", 1)[0]
        stamped = {**value, "checkpoint": self.checkpoint_digest(run_id)}
        with self._writing(f"a result of run {run_id}"):
            cache = self._cache()
            with cache.transact():
                cache.set(f"result:{key}", codec.encode(stamped))
                cache.set(f"derived:{run_id}", codec.encode({"stamp": uuid.uuid4().hex, "values": {}}))
        return stamped

    def list_results(self, run_id: str, kind: str | None = None) -> Listing:
        """Every cached result of one run (optionally of one kind) computed from its current checkpoint,
        oldest first; unreadable ones are left out and named in ``.problems``."""
        try:
            digest = self.checkpoint_digest(run_id)
        except (StoreCorrupt, KeyError) as exc:
            return Listing([], [str(exc)])
        values, problems = [], []
        for row in self._rows(f"result:{run_id}:" + (f"{kind}:" if kind else "")):
            try:
                value = self._decode(row)
            except (RowRefused, codec.CodecError, OSError) as exc:
                problems.append(f"{row[0]} ({exc})")
                continue
            if isinstance(value, dict) and value.get("checkpoint") == digest:
                values.append(value)
        return Listing(sorted(values, key=lambda v: v.get("created", 0)), problems)

    # --- values derived from a run's cached results (its worst case), kept until they change -------
    def _derived_entry(self, run_id: str) -> dict[str, Any]:
        """The run's derived entry: {"stamp", "values"}; stamp None when no result was ever written,
        "unreadable" when the entry is damaged (its values are then derived again, never read)."""
        try:
            entry = self._read(f"derived:{run_id}", run_id, "the derived values")
        except StoreCorrupt:
            return {"stamp": "unreadable", "values": {}}
        if not isinstance(entry, dict) or not isinstance(entry.get("values"), dict):
            return {"stamp": entry.get("stamp") if isinstance(entry, dict) else None, "values": {}}
        return entry

    def results_stamp(self, run_id: str) -> str | None:
        """Changes whenever a result of the run is written (None: none ever was)."""
        return self._derived_entry(run_id)["stamp"]

    def derived(self, name: str, run_id: str | None = None) -> dict[str, Any]:
        """{run_id: value} of ``name`` for every run (or one) whose results have not changed since the
        value was derived: one range read, however many runs."""
        entries = {run_id: self._derived_entry(run_id)} if run_id is not None else self._all_derived()
        return {r: e["values"][name] for r, e in entries.items()
                if isinstance(e, dict) and isinstance(e.get("values"), dict) and name in e["values"]}

    def _all_derived(self) -> dict[str, Any]:
        """Every run's derived entry, decoded once per change of the index (SQLite's data_version
        changes whenever another connection, this store's writer included, commits)."""
        version = self._query("PRAGMA data_version", ())
        if self._derived_memo is not None and self._derived_memo[0] == version:
            return self._derived_memo[1]
        with _collector_paused():
            decoded = [(row[0], self._try_decode(row)) for row in self._rows("derived:")]
        entries = {key[len("derived:"):]: value for key, (value, exc) in decoded if exc is None}
        self._derived_memo = (version, entries)
        return entries

    def put_derived(self, name: str, run_id: str, stamp: str | None, value: Any) -> None:
        """Keep ``value`` derived from the run's results as they were at ``stamp`` (read before deriving;
        if a result was written since, nothing is kept). Best effort: a store that cannot be written
        (a full disk) derives it again next time."""
        try:
            with self._writing(f"a derived value of run {run_id}"):
                cache = self._cache()
                with cache.transact():
                    entry = self._derived_entry(run_id)
                    if stamp != entry["stamp"] or stamp == "unreadable" or not self.has_run(run_id):
                        return  # a result was written meanwhile, or the entry is damaged (store check)
                    entry = {"stamp": stamp, "values": {**entry["values"], name: value}}
                    cache.set(f"derived:{run_id}", codec.encode(entry))
        except StoreError:
            pass

    # --- writing -----------------------------------------------------------------------------------
    def _cache(self):
        """The diskcache writer, opened (and the store created) on the first write."""
        with self._lock:
            if self._writer is None:
                import diskcache

                with self._writing("the store"):
                    self.path.mkdir(parents=True, exist_ok=True)
                    cache = diskcache.Cache(str(self.path), disk=StoreDisk, size_limit=2**40, timeout=60,
                                            disk_min_file_size=MIN_FILE_SIZE)  # never evict a run silently
                    with cache.transact():
                        info = cache.get(FORMAT_KEY)
                        if info is None:
                            cache.set(FORMAT_KEY, codec.encode({"format": FORMAT, "id": uuid.uuid4().hex}))
                            info = cache.get(FORMAT_KEY)
                    if self._marker() is None:
                        with contextlib.suppress(FileExistsError):
                            with open(self.path / MARKER_NAME, "x") as f:
                                json.dump({"format": FORMAT, "id": codec.decode(info)["id"]}, f)
                self._writer = cache
            return self._writer

    @contextlib.contextmanager
    def _writing(self, what: str):
        """Faults of a write as StoreError: a full disk as StoreFull (the transaction rolled back)."""
        try:
            yield
        except (OSError, sqlite3.Error) as exc:
            if _is_full(exc):
                raise StoreFull(f"the disk holding the store at {self.path} is full: {what} was not stored "
                                f"(free some space and run again; what was stored before is intact)") from None
            raise StoreError(f"{what} could not be written to the store at {self.path}: {exc}") from None

    def save_run(self, record: dict[str, Any], checkpoint: dict[str, Any], latents: dict[str, Any]) -> None:
        """Store a finished run (a retrained one replaces its old rows and cached results)."""
        self._save(record, checkpoint, latents, {})

    def _save(self, record: dict[str, Any], checkpoint: dict[str, Any], latents: dict[str, Any],
              results: dict[str, dict[str, Any]]) -> None:
        """A run's rows and ``results`` ({result key: value stamped with this checkpoint}) in one transaction."""
        run_id = record["run_id"]
        ckpt, lat = codec.encode(checkpoint), codec.encode(latents)
        record = {**record, "blobs": {"checkpoint": codec.body_digest(ckpt), "latents": codec.body_digest(lat)}}
        summary = {k: v for k, v in record.items() if k != "history"}
        foreign = [k for k, v in results.items() if not k.startswith(f"{run_id}:") or not isinstance(v, dict)
                   or v.get("checkpoint") != record["blobs"]["checkpoint"]]
        if foreign:
            raise StoreError(f"run {run_id}: {len(foreign)} result(s) were not computed from its checkpoint "
                             f"(first: {foreign[0]}); nothing was stored")
        with self._writing(f"run {run_id}"):
            cache = self._cache()
            with cache.transact():
                self._delete_results(cache, run_id)
                cache.set(f"ckpt:{run_id}", ckpt)
                cache.set(f"latents:{run_id}", lat)
                for key, value in results.items():
                    cache.set(f"result:{key}", codec.encode(value))
                cache.set(f"run:{run_id}", codec.encode(record))
                cache.set(f"summary:{run_id}", codec.encode(summary))

    # --- a run as one value, to carry it from one store to another (a Ray worker's to the driver's) ---
    def export_run(self, run_id: str) -> bytes:
        """The run's record, checkpoint, latents and cached results as ``cache.codec`` bytes: JSON and
        raw arrays behind a checksum, never a pickle (``import_run`` reads them)."""
        results = {}
        digest = self.checkpoint_digest(run_id)
        for row in self._rows(f"result:{run_id}:"):
            value = self._decode(row)
            if isinstance(value, dict) and value.get("checkpoint") == digest:
                results[str(row[0])[len("result:"):]] = value
        record = {k: v for k, v in self.get_run(run_id).items() if k != "blobs"}
        return codec.encode({"bundle": 1, "record": record, "checkpoint": self.load_checkpoint(run_id),
                             "latents": self.get_latents(run_id), "results": results})

    def import_run(self, data: bytes) -> str:
        """Store a run exported by ``export_run`` (from any store) with its cached results, in one
        transaction; returns its id. Damaged bytes, or results computed from another checkpoint,
        raise StoreError and store nothing."""
        try:
            bundle = codec.decode(data)
            if not isinstance(bundle, dict) or bundle.get("bundle") != 1 or not isinstance(bundle.get("record"), dict):
                raise codec.CodecError("it is not an exported run")
            record, results = bundle["record"], bundle.get("results")
            if not isinstance(record.get("run_id"), str) or not isinstance(record.get("settings"), dict):
                raise codec.CodecError("its record has no run id or settings")
            if not isinstance(results, dict):
                raise codec.CodecError("its results are not a table of result keys")
            missing = [part for part in ("checkpoint", "latents") if not isinstance(bundle.get(part), dict)]
            if missing:
                raise codec.CodecError(f"it has no {' or '.join(missing)}")
        except (codec.CodecError, KeyError, TypeError) as exc:
            raise StoreError(f"an exported run could not be read ({exc}); nothing was stored") from None
        self._save(record, bundle["checkpoint"], bundle["latents"], results)
        return record["run_id"]

    # --- a user's notes on a run: name, tags, notes (the Runs page) ----------------------------------
    NOTE_FIELDS = ("name", "tags", "notes")

    def put_note(self, run_id: str, note: dict[str, str]) -> None:
        """Keep what the user wrote about a stored run (plain text: ``NOTE_FIELDS``, at most 2,000
        characters each); an all-empty note removes it."""
        if not self.has_run(run_id):
            raise KeyError(f"run {run_id!r} is not in the store at {self.path}")
        note = {k: str(note.get(k) or "")[:2000] for k in self.NOTE_FIELDS}
        with self._writing(f"the note on run {run_id}"):
            cache = self._cache()
            with cache.transact():
                if any(note.values()):
                    cache.set(f"note:{run_id}", codec.encode(note))
                else:
                    cache.delete(f"note:{run_id}")

    def notes(self) -> dict[str, dict[str, str]]:
        """{run_id: note} for every run with one (one range read); unreadable notes are left out."""
        out = {}
        for row in self._rows("note:"):
            value, exc = self._try_decode(row)
            if exc is None and isinstance(value, dict):
                out[str(row[0])[len("note:"):]] = {k: str(value.get(k, "")) for k in self.NOTE_FIELDS}
        return out

    # --- studies (engine.studies): one row each, the definition and the per-run values ---------------
    def put_study(self, name: str, value: dict[str, Any]) -> None:
        with self._writing(f"study {name}"):
            cache = self._cache()
            with cache.transact():
                cache.set(f"study:{name}", codec.encode(value))

    def get_study(self, name: str) -> dict[str, Any] | None:
        """A stored study, or None; a damaged row raises StoreCorrupt naming it."""
        try:
            rows = self._row(f"study:{name}")
            return self._decode(rows[0]) if rows else None
        except (RowRefused, codec.CodecError, OSError, sqlite3.DatabaseError) as exc:
            raise StoreCorrupt(f"study {name} in the store at {self.path} is damaged ({exc}); run the study again "
                               f"to write it anew (its runs are kept)", what="study") from None

    def list_studies(self) -> Listing:
        """Every stored study, by name; unreadable ones are named in ``.problems``."""
        studies, problems = [], []
        for row in self._rows("study:"):
            value, exc = self._try_decode(row)
            if exc is None and isinstance(value, dict):
                studies.append(value)
            else:
                problems.append(f"{str(row[0])[len('study:'):]} ({exc or 'not a study'})")
        return Listing(sorted(studies, key=lambda s: str(s.get("name"))), problems)

    def delete_run(self, run_id: str) -> bool:
        with self._writing(f"the deletion of run {run_id}"):
            cache = self._cache()
            with cache.transact():
                found = cache.delete(f"summary:{run_id}")
                for key in (f"run:{run_id}", f"ckpt:{run_id}", f"latents:{run_id}", f"note:{run_id}"):
                    cache.delete(key)
                self._delete_results(cache, run_id)
        return bool(found)

    def _delete_results(self, cache, run_id: str) -> None:
        """A run's cached results and what was derived from them (in a transaction)."""
        for row in self._rows(f"result:{run_id}:"):
            cache.delete(row[0])
        cache.delete(f"derived:{run_id}")

    def close(self) -> None:
        with self._lock:  # the reader first: the last connection to close folds the WAL into the index
            if self._reader is not None:
                self._reader.close()
                self._reader = None
            if self._writer is not None:
                self._writer.close()
                self._writer = None


def _to_device(value: Any, device) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_device(v, device) for v in value]
    return value
