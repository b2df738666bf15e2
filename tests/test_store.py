"""The store as an attacker and as bad luck would try it: pickles in every row and file, flipped and
truncated bytes in every blob, emptied and replaced indexes, kills mid-write, a full disk, and the
migration of a store written by the older (pickled) format."""
import io
import json
import os
import pickle
import random
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from cache import DB_NAME, RunStore, StoreCorrupt, StoreError, codec, value_files
from cache.check import check_store
from cache.migrate import migrate_store
from engine.config import ObjectiveSpec, TrainConfig
from engine.train import train_job

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "store-v1"
MODE_RAW, MODE_BINARY, MODE_TEXT, MODE_PICKLE = 1, 2, 3, 4


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """Two real runs (CE and GCCS, MLP, one epoch) with real cached results of two kinds."""
    from engine.suites import sweep_job

    path = tmp_path_factory.mktemp("template") / "store"
    store = RunStore(path)
    records = train_job(TrainConfig(epochs=1, model="mlp", device="cpu", latent_samples=60,
                                    objectives=(ObjectiveSpec("ce"), ObjectiveSpec("gccs"))), store)
    sweep_job(store, [r["run_id"] for r in records], "fgsm", {}, [0.0, 0.1], samples=40)
    store.close()
    return path, [r["run_id"] for r in records]


@pytest.fixture
def copy(template, tmp_path):
    path, ids = template
    shutil.copytree(path, tmp_path / "store")
    return tmp_path / "store", ids


def rows(path):
    con = sqlite3.connect(path / DB_NAME)
    try:
        return con.execute("SELECT rowid, key, raw, mode, filename, value FROM Cache").fetchall()
    finally:
        con.close()


def execute(path, sql, params=()):
    con = sqlite3.connect(path / DB_NAME)
    with con:
        con.execute(sql, params)
    con.close()


def cli(*args, store):
    return subprocess.run([sys.executable, "-m", "engine", "--store", str(store), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


class Payload:
    """Unpickling this creates the marker file: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_round_trip_keeps_every_value_and_the_codec_refuses_what_it_cannot_store():
    import numpy as np
    import torch

    value = {"a": [1, 2.5, float("nan"), None, True, "é"], "t": (1, 2), "x": np.arange(6, dtype=np.float32).reshape(2, 3),
             "w": torch.ones(2, 2, dtype=torch.float64), "n": np.int64(7), "f": np.float32(0.5)}
    back = codec.decode(codec.encode(value))
    assert back["a"][:2] == [1, 2.5] and back["a"][2] != back["a"][2] and back["a"][3:] == [None, True, "é"]
    assert back["t"] == [1, 2] and back["n"] == 7 and back["f"] == 0.5
    assert back["x"].dtype == np.float32 and back["x"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert isinstance(back["w"], torch.Tensor) and back["w"].dtype == torch.float64 and back["w"].sum() == 4
    for bad in ({1: "int key"}, {"s": {1, 2}}, {"o": object()}, {"arr": np.array(["a"], dtype=object)}):
        with pytest.raises(TypeError, match="value"):
            codec.encode(bad)
    blob = codec.encode(value)
    for damaged in (blob[:-1], blob[:20], b"", blob[:60] + bytes([blob[60] ^ 1]) + blob[61:]):
        with pytest.raises(codec.CodecError):
            codec.decode(damaged)


def test_pickles_in_every_row_value_key_mode_and_value_file_never_run(copy, tmp_path):
    path, (ce, gccs) = copy
    marker = tmp_path / "code-ran"
    payload = pickle.dumps(Payload(marker))
    by_key = {r[1]: r for r in rows(path)}
    # a row whose value is a pickle (mode pickle, in the index), for a summary, a record and a result
    execute(path, "UPDATE Cache SET mode = ?, value = ?, filename = NULL WHERE key = ?",
            (MODE_PICKLE, payload, f"summary:{gccs}"))
    execute(path, "UPDATE Cache SET mode = ?, value = ?, filename = NULL WHERE key = ?",
            (MODE_PICKLE, payload, f"run:{gccs}"))
    result_key = next(k for k in by_key if k.startswith(f"result:{ce}:"))
    execute(path, "UPDATE Cache SET mode = ?, value = ? WHERE key = ?", (MODE_PICKLE, payload, result_key))
    # a row whose key is a pickle with raw = 0
    execute(path, "INSERT INTO Cache (key, raw, store_time, expire_time, access_time, mode, value) "
                  "VALUES (?, 0, 0, NULL, 0, ?, ?)", (payload, MODE_RAW, b"x"))
    execute(path, "INSERT INTO Cache (key, raw, store_time, expire_time, access_time, mode, value) "
                  "VALUES (?, 0, 0, NULL, 0, ?, ?)", (f"summary:{ce}x", MODE_PICKLE, payload))
    # value files holding a pickle: one whose row says pickle, one whose row says binary (the checkpoint)
    (path / "ab" / "cd").mkdir(parents=True)
    (path / "ab" / "cd" / "pickled.val").write_bytes(payload)
    execute(path, "UPDATE Cache SET mode = ?, filename = ?, value = NULL WHERE key = ?",
            (MODE_PICKLE, "ab/cd/pickled.val", f"latents:{gccs}"))
    assert by_key[f"ckpt:{gccs}"][4], "the checkpoint is a value file"
    (path / by_key[f"ckpt:{gccs}"][4]).write_bytes(payload)

    store = RunStore(path)
    listing = store.list_runs()
    assert [r["run_id"] for r in listing] == [ce] and len(listing.problems) == 2
    assert "ce" == store.get_run(ce)["objective"] and store.load_checkpoint(ce)["model"]
    for read in (lambda: store.get_run(gccs), lambda: store.load_checkpoint(gccs), lambda: store.get_latents(gccs)):
        with pytest.raises(StoreCorrupt) as info:
            read()
        assert info.value.run_id == gccs and gccs in str(info.value)
    assert store.get_result(result_key[len("result:"):]) is None
    assert len(store.list_results(ce).problems) == 1
    report = check_store(path)
    assert not report["clean"] and {d["run"] for d in report["damaged"]} == {gccs, ce, ce + "x"}
    assert len(report["refused_rows"]) == 1
    run = cli("runs", store=path)
    assert run.returncode == 0 and "Traceback" not in run.stderr and "could not be read" in run.stderr
    assert [r["run_id"] for r in json.loads(run.stdout)] == [ce]
    bad = cli("attack", gccs, "--attack", "fgsm", "--eps", "0.1", "--samples", "20", store=path)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "damaged" in bad.stderr
    repaired = check_store(path, repair=True)["repaired"]
    assert set(repaired["quarantined_runs"]) == {gccs, ce, ce + "x"} and repaired["quarantined_rows"] > 3
    assert check_store(path)["clean"]
    assert not marker.exists()


@pytest.mark.parametrize("what", ["ckpt", "latents", "summary", "run", "result"])
def test_flipped_or_truncated_bytes_in_any_blob_are_named_and_never_used(copy, what):
    path, (ce, gccs) = copy
    rng = random.Random(what)
    key = next(r[1] for r in rows(path) if r[1].startswith(f"{what}:{gccs}"))
    for damage in ("flip", "truncate", "empty"):
        trial = path.parent / f"{what}-{damage}"
        shutil.copytree(path, trial)
        row = next(r for r in rows(trial) if r[1] == key)
        data = (trial / row[4]).read_bytes() if row[4] else bytes(row[5])
        if damage == "flip":
            data = bytearray(data)
            for i in rng.sample(range(len(data)), min(256, len(data))):
                data[i] ^= 0xFF
            data = bytes(data)
        else:
            data = data[:len(data) // 2] if damage == "truncate" else b""
        if row[4]:
            (trial / row[4]).write_bytes(data)
        else:
            execute(trial, "UPDATE Cache SET value = ? WHERE rowid = ?", (data, row[0]))
        store = RunStore(trial)
        reads = {"ckpt": lambda: store.load_checkpoint(gccs), "latents": lambda: store.get_latents(gccs),
                 "run": lambda: store.get_run(gccs), "summary": lambda: store.load_checkpoint(gccs)}
        if what == "result":
            assert store.get_result(key[len("result:"):]) is None  # recomputed, never served
            assert store.list_results(gccs).problems
        else:
            with pytest.raises(StoreCorrupt, match=gccs):
                reads[what]()
        if what == "summary":
            assert [r["run_id"] for r in store.list_runs()] == [ce] and store.list_runs().problems
        assert store.load_checkpoint(ce) and store.get_run(ce)  # the other run is untouched
        report = check_store(trial)
        assert [d["run"] for d in report["damaged"]] == [gccs], report
        store.close()


def test_a_blob_swapped_in_from_another_run_is_detected(copy):
    path, (ce, gccs) = copy
    by_key = {r[1]: r for r in rows(path)}
    shutil.copyfile(path / by_key[f"ckpt:{ce}"][4], path / by_key[f"ckpt:{gccs}"][4])
    with pytest.raises(StoreCorrupt, match="checksum"):
        RunStore(path).load_checkpoint(gccs)


def test_results_name_their_checkpoint_and_a_retrained_run_drops_the_old_ones(copy):
    path, (ce, _) = copy
    store = RunStore(path)
    digest = store.checkpoint_digest(ce)
    results = store.list_results(ce)
    assert results and all(r["checkpoint"] == digest for r in results)
    record, ckpt, latents = store.get_run(ce), store.load_checkpoint(ce), store.get_latents(ce)
    ckpt["model"] = {k: v + 1 for k, v in ckpt["model"].items()}
    store.save_run(record, ckpt, latents)
    assert store.checkpoint_digest(ce) != digest and store.list_results(ce) == []
    assert check_store(path)["clean"]


def test_opening_and_reading_write_nothing(copy, tmp_path):
    path, (ce, _) = copy
    before = {p: p.stat().st_mtime_ns for p in path.rglob("*") if p.is_file() and "-wal" not in p.name
              and "-shm" not in p.name}
    store = RunStore(path)
    store.list_runs(), store.get_run(ce), store.load_checkpoint(ce), store.list_results(ce)
    store.close()
    after = {p: p.stat().st_mtime_ns for p in path.rglob("*") if p.is_file() and "-wal" not in p.name
             and "-shm" not in p.name}
    assert after == before
    fresh = tmp_path / "not-yet"
    assert RunStore(fresh).list_runs() == [] and not fresh.exists()


@pytest.mark.parametrize("fault", ["deleted", "emptied-file", "emptied-rows", "replaced", "garbage"])
def test_a_missing_emptied_replaced_or_damaged_index_is_explained_and_repair_starts_afresh(copy, tmp_path, fault):
    path, _ = copy
    db = path / DB_NAME
    if fault == "deleted":
        db.unlink()
    elif fault == "emptied-file":
        db.write_bytes(b"")
    elif fault == "emptied-rows":
        execute(path, "DELETE FROM Cache")
    elif fault == "replaced":
        other = RunStore(tmp_path / "other")
        other.save_run({"run_id": "x" * 16, "created": 0}, {"w": [1]}, {})
        other.close()
        shutil.copyfile(tmp_path / "other" / DB_NAME, db)
    else:
        db.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreCorrupt) as info:
        RunStore(path)
    assert str(path) in str(info.value) and ("store check" in str(info.value) or "backup" in str(info.value))
    run = cli("runs", store=path)
    assert run.returncode == 2 and "Traceback" not in run.stderr and "index" in run.stderr
    files = len(value_files(path))
    repaired = check_store(path, repair=True)
    assert repaired["repaired"]["index_set_aside"] and repaired["repaired"]["moved_value_files"] == files
    assert RunStore(path).list_runs() == [] and check_store(path)["clean"]


def test_a_store_of_the_older_pickled_format_is_refused_then_migrated_with_everything_intact(tmp_path):
    manifest = json.loads((FIXTURE.parent / "store-v1.json").read_text())
    path = tmp_path / "store"
    shutil.copytree(FIXTURE, path)
    with pytest.raises(StoreError, match="store migrate"):
        RunStore(path)
    run = cli("runs", store=path)
    assert run.returncode == 2 and "store migrate" in run.stderr and "Traceback" not in run.stderr
    done = cli("store", "migrate", store=path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["runs"] == len(manifest["runs"]) and report["results"] == len(manifest["results"])
    store = RunStore(path)
    assert sorted(r["run_id"] for r in store.list_runs()) == sorted(manifest["runs"])
    import hashlib

    import numpy as np
    import torch

    def digest(v):  # as the manifest was written: JSON of the old value, arrays as lists
        return hashlib.sha256(json.dumps(v, sort_keys=True, default=lambda a: np.asarray(a).tolist()).encode()).hexdigest()

    for run_id in manifest["runs"]:
        record = {k: v for k, v in store.get_run(run_id).items() if k != "blobs"}
        assert digest(record) == manifest["records"][run_id]
        latents = store.get_latents(run_id)
        latents["snapshots"] = [tuple(s) for s in latents["snapshots"]]
        assert digest(latents) == manifest["latents"][f"latents:{run_id}"]
        old_row = next(r for r in rows(FIXTURE) if r[1] == f"ckpt:{run_id}")
        blob = (FIXTURE / old_row[4]).read_bytes() if old_row[4] else bytes(old_row[5])
        assert hashlib.sha256(blob).hexdigest() == manifest["checkpoints"][f"ckpt:{run_id}"]
        old, new = torch.load(io.BytesIO(blob), weights_only=True), store.load_checkpoint(run_id)
        for part in ("model", "objective"):
            assert list(old[part]) == list(new[part])
            assert all(torch.equal(old[part][k], new[part][k]) for k in old[part])
    for key, expected in manifest["results"].items():
        value = {k: v for k, v in store.get_result(key[len("result:"):]).items() if k != "checkpoint"}
        assert digest(value) == expected, key
    assert check_store(path)["clean"]
    assert (tmp_path / "store.format1" / DB_NAME).exists()  # the old store is kept until deleted


def test_migrating_a_crafted_old_store_runs_no_code_and_changes_nothing(tmp_path):
    path = tmp_path / "store"
    shutil.copytree(FIXTURE, path)
    marker = tmp_path / "code-ran"
    key = next(r[1] for r in rows(path) if r[1].startswith("run:"))
    execute(path, "UPDATE Cache SET value = ? WHERE key = ?", (pickle.dumps(Payload(marker)), key))
    with pytest.raises(StoreError, match="cannot be read safely"):
        migrate_store(path)
    assert not marker.exists() and not (tmp_path / "store.format1").exists()
    with pytest.raises(StoreError, match="store migrate"):
        RunStore(path)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("mount"), reason="a small tmpfs needs root")
def test_a_full_disk_is_a_clear_message_stores_nothing_half_and_still_reads(tmp_path):
    train = ("train", "--model", "mlp", "--objective", "ce", "--objective", "gccs", "--epochs", "1", "--quiet")
    probe = cli(*train, store=tmp_path / "probe")
    assert probe.returncode == 0, probe.stderr
    both = sum(p.stat().st_size for p in (tmp_path / "probe").rglob("*") if p.is_file())
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)]).returncode != 0:
        pytest.skip("could not mount a tmpfs")
    try:
        stat = os.statvfs(mount)
        (mount / "filler").write_bytes(b"\0" * (stat.f_bavail * stat.f_frsize - int(0.75 * both)))  # room for one run
        store_path = mount / "store"
        full = cli(*train, store=store_path)
        assert full.returncode == 2 and "Traceback" not in full.stderr, full.stderr
        assert "full" in full.stderr
        out = json.loads(full.stdout)
        assert len(out["stored"]) == 1 and len(out["not_stored"]) == 1, out
        listed = cli("runs", store=store_path)  # reading works on the full disk
        assert listed.returncode == 0, listed.stderr
        assert [r["run_id"] for r in json.loads(listed.stdout)] == out["stored"]
        store = RunStore(store_path)
        assert store.load_checkpoint(out["stored"][0])["model"]
        store.close()
        report = check_store(store_path)
        assert not report["damaged"] and not report["refused_rows"], report
    finally:  # lazily, should anything of this process still hold a file there
        subprocess.run(["umount", "--lazy", str(mount)])


WRITER = """
import os, sys, numpy as np
from cache import RunStore
store = RunStore(sys.argv[1])
rng = np.random.default_rng(int(sys.argv[2]))
for i in range(10_000):
    run_id = f"{int(sys.argv[2]):04d}{i:012d}"
    big = rng.standard_normal(int(rng.integers(100, 40_000))).astype(np.float32)
    store.save_run({"run_id": run_id, "created": i, "settings": {"seed": i}}, {"model": {"w": big}},
                   {"z": big[:50]})
    store.put_result(f"{run_id}:accuracy:{i}", {"kind": "accuracy", "accuracy": 0.5, "created": i})
    print(run_id, flush=True)
"""


@pytest.mark.slow
def test_kill_9_at_random_moments_never_leaves_half_a_run(tmp_path):
    """20 writers killed at random moments, four to a store (a store killed into again and again)."""
    import time

    rng, stored, path = random.Random(0), {}, None
    for trial in range(20):
        if trial % 4 == 0:
            path = tmp_path / f"store{trial // 4}"
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(trial)], cwd=ROOT,
                                env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(0.4, 1.2))  # past the imports, into the writes
        proc.kill()
        proc.wait()
        stored.setdefault(path, set()).update(proc.stdout.read().split())
        store = RunStore(path)
        listing = store.list_runs()
        assert not listing.problems
        for record in listing:
            assert store.load_checkpoint(record["run_id"])["model"]["w"].ndim == 1
            assert store.get_latents(record["run_id"])["z"].shape == (50,)
        assert stored[path] <= {r["run_id"] for r in listing}  # every run a writer reported is there
        store.close()
        report = check_store(path)
        assert not report["damaged"] and not report["refused_rows"], report
    for path in stored:
        check_store(path, repair=True)
        assert check_store(path)["clean"]


def test_a_listing_read_once_follows_every_write_from_any_connection(tmp_path):
    """list_runs decodes the summaries once per change of the index (a Streamlit rerun that changed
    nothing reads nothing); a write by another store object, or another process, shows at once."""
    import numpy as np

    def save(store, i):
        store.save_run({"run_id": f"{i:016x}", "created": i, "settings": {"seed": i}},
                       {"model": {"w": np.zeros(3, dtype=np.float32)}}, {"z": np.zeros((2, 2), dtype=np.float32)})

    reader, writer = RunStore(tmp_path / "s"), RunStore(tmp_path / "s")
    save(writer, 1)
    first = reader.list_runs()
    assert [r["run_id"] for r in first] == [f"{1:016x}"]
    first[0]["run_id"] = "changed"  # a caller changing its copy of a record
    again = reader.list_runs()
    assert again[0]["run_id"] == f"{1:016x}"
    save(writer, 2)
    assert [r["run_id"] for r in reader.list_runs()] == [f"{2:016x}", f"{1:016x}"]
    save(reader, 3)  # its own writer is another connection too
    assert len(reader.list_runs()) == 3
    proc = subprocess.run([sys.executable, "-c", "import sys; from cache import RunStore; "
                           f"RunStore(sys.argv[1]).delete_run('{2:016x}')", str(tmp_path / "s")], cwd=ROOT)
    assert proc.returncode == 0
    assert [r["run_id"] for r in reader.list_runs()] == [f"{3:016x}", f"{1:016x}"]
    reader.close()
    writer.close()
