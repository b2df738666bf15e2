"""Every page under AppTest on a store with one damaged run: the page shows the others and one clear
message, never a traceback; a page that needs the damaged blob says so and computes nothing from it."""
import sqlite3
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cache import DB_NAME, RunStore
from engine.config import ObjectiveSpec, TrainConfig
from engine.train import train_job

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PAGES = ["start", "train", "latent", "robustness", "examples", "runs"]


@pytest.fixture
def damaged_store(tmp_path, monkeypatch):
    """CE, GCCS and MMC (MLP, one epoch); MMC's summary has a flipped byte, GCCS's latents too."""
    from ui.state import get_manager, get_store

    path = tmp_path / "store"
    store = RunStore(path)
    records = train_job(TrainConfig(epochs=1, model="mlp", device="cpu", latent_samples=50,
                                    objectives=(ObjectiveSpec("ce"), ObjectiveSpec("gccs"), ObjectiveSpec("mmc"))),
                        store)
    store.close()
    ids = {r["objective"]: r["run_id"] for r in records}
    con = sqlite3.connect(path / DB_NAME)
    with con:
        for key in (f"summary:{ids['mmc']}", f"latents:{ids['gccs']}"):
            value, filename = con.execute("SELECT value, filename FROM Cache WHERE key = ?", (key,)).fetchone()
            if filename:
                data = bytearray((path / filename).read_bytes())
                data[-5] ^= 0xFF
                (path / filename).write_bytes(bytes(data))
            else:
                data = bytearray(value)
                data[-5] ^= 0xFF
                con.execute("UPDATE Cache SET value = ? WHERE key = ?", (bytes(data), key))
    con.close()
    monkeypatch.setenv("SIMPLEX_STORE", str(path))
    get_store.clear()
    get_manager.clear()
    yield ids
    get_store.clear()
    get_manager.clear()


def open_page(name: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page(f"pages/{name}.py")
    at.run()
    return at


def test_every_page_shows_the_other_runs_and_one_message(damaged_store):
    mmc = damaged_store["mmc"]
    for name in PAGES:
        at = open_page(name)
        assert not at.exception, (name, at.exception)
        text = " ".join(w.value for w in at.warning)
        if name in ("latent", "robustness", "examples", "runs", "train"):
            assert text.count("could not be read") == 1 and mmc in text and "store check" in text, (name, text)
    runs = open_page("runs")
    (table,) = [d.value for d in runs.dataframe if "run_id" in d.value.columns]
    assert sorted(table["run_id"]) == sorted([damaged_store["ce"], damaged_store["gccs"]])


def test_a_page_that_needs_a_damaged_blob_says_so(damaged_store):
    gccs = damaged_store["gccs"]
    at = open_page("latent")
    at.multiselect(key="latent-store-runs").set_value([gccs])
    at.run()
    assert not at.exception, at.exception
    errors = " ".join(e.value for e in at.error)
    assert "latents of run " + gccs in errors and "damaged" in errors and "store check" in errors
