"""The Runs and Examples pages under AppTest, on a store of their own, and the export helpers."""
import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from engine.config import ObjectiveSpec, TrainConfig
from engine.data import load_dataset
from engine.robustness import accuracy_point
from engine.train import load_run, train_job

APP = str(Path(__file__).resolve().parents[1] / "app.py")


@pytest.fixture
def app_store(tmp_path, monkeypatch):
    """A fresh store that the app's get_store() opens: the singletons (the store, and the job manager
    that writes to it) are cleared so the next page run creates them from $SIMPLEX_STORE, and cleared
    again afterwards so later tests get the process's own. (A cleared manager's idle worker thread
    stays behind, blocked on its empty queue.)"""
    from cache import RunStore
    from ui.state import get_manager, get_store

    monkeypatch.setenv("SIMPLEX_STORE", str(tmp_path / "store"))
    get_store.clear()
    get_manager.clear()
    store = RunStore(tmp_path / "store")
    yield store
    store.close()
    get_store.clear()
    get_manager.clear()


@pytest.fixture
def populated(app_store):
    """CE and GCCS, two epochs, with a cached PGD accuracy for CE only."""
    ce, gccs = train_job(TrainConfig(epochs=2, device="cpu", latent_samples=50,
                                     objectives=(ObjectiveSpec("ce"), ObjectiveSpec("gccs"))), app_store)
    data = load_dataset("digits")
    model, objective, _ = load_run(app_store, ce["run_id"])
    result, _ = accuracy_point(app_store, ce["run_id"], model, objective, data.x_test[:100], data.y_test[:100],
                               "pgd", {"steps": 5, "alpha": 0.01}, 0.1)
    return app_store, ce, gccs, result


def page(name: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page(f"pages/{name}.py")
    at.run()
    assert not at.exception, at.exception
    return at


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def generate(at: AppTest, timeout: float = 120) -> None:
    """Press Generate on the Examples page and rerun until its background job has finished (AppTest
    does not run the page's timed fragment; a full rerun collects the finished job)."""
    button(at, "Generate").click()
    at.run()
    deadline = time.time() + timeout
    while at.session_state["examples-pending"] and time.time() < deadline:
        time.sleep(0.1)
        at.run()
    assert not at.session_state["examples-pending"], "the examples job did not finish"


def download_labels(at: AppTest) -> list[str]:
    return [b.proto.label for b in at.get("download_button")]


# --- Runs ---------------------------------------------------------------------------------------------
def test_runs_page_on_an_empty_store_says_how_to_fill_it(app_store):
    at = page("runs")
    assert "The store is empty" in at.info[0].value
    assert not at.dataframe


def column_labels(frame) -> dict[str, str]:
    """The headers a dataframe shows: its column_config labels by column name."""
    config = json.loads(frame.proto.columns or "{}")
    return {name.removeprefix("col:"): c.get("label") for name, c in config.items()}


def test_runs_page_shows_every_run_with_its_worst_case_and_one_attack_alone_on_request(populated):
    from engine.report import NOT_EVALUATED

    store, ce, gccs, result = populated
    at = page("runs")
    # the headline: the worst case over every attack tried (here PGD alone, so it equals PGD's accuracy)
    assert at.selectbox(key="runs-attack").value == "—"
    table = at.dataframe[0].value.set_index("run_id")
    assert set(table.index) == {ce["run_id"], gccs["run_id"]}
    assert "alone_acc" not in table
    assert table.loc[ce["run_id"], "worst_case@0.1"] == pytest.approx(result["accuracy"])
    assert table.loc[ce["run_id"], "worst_case_source"] == ("worst case over 1 attack setting (pgd); "
                                                            "first 100 test images; seed 0")
    assert table.loc[gccs["run_id"], "worst_case_source"] == NOT_EVALUATED
    labels = column_labels(at.dataframe[0])
    assert labels["worst_case@0.1"] == "worst case @ ε 0.1"
    # one attack alone, beside it, labelled as the upper bound it is
    at.selectbox(key="runs-attack").set_value("pgd")
    at.run()
    assert at.selectbox(key="runs-eps-pgd").value == 0.1
    table = at.dataframe[0].value.set_index("run_id")
    assert table.loc[ce["run_id"], "alone_acc"] == pytest.approx(result["accuracy"])
    assert table.loc[ce["run_id"], "alone_source"] == "steps=5, alpha=0.01; first 100 test images; seed 0"
    assert table.loc[gccs["run_id"], "alone_source"] == "not computed"
    assert column_labels(at.dataframe[0])["alone_acc"] == "pgd alone @ ε 0.1 (upper bound)"
    assert table.loc[gccs["run_id"], "ce_run_id"] == ce["run_id"]
    assert table.loc[gccs["run_id"], "clean_acc"] == pytest.approx(gccs["final"]["test_acc"])
    assert download_labels(at) == ["CSV", "JSON", "checkpoint (.pt)"]
    checkpoint = at.get("download_button")[2].proto
    assert checkpoint.deferred_file_id and checkpoint.ignore_rerun  # built on click only, no rerun


def test_runs_page_deletes_a_run_only_after_confirmation(populated):
    store, ce, gccs, _ = populated
    at = page("runs")
    at.selectbox(key="runs-run").set_value(gccs["run_id"])
    at.run()
    button(at, "Delete…").click()
    at.run()
    assert "cannot be undone" in at.warning[0].value
    button(at, "Keep it").click()
    at.run()
    assert store.has_run(gccs["run_id"]) and not at.warning

    at.selectbox(key="runs-run").set_value(gccs["run_id"])
    button(at, "Delete…").click()
    at.run()
    button(at, "Yes, delete").click()
    at.run()
    assert not at.exception, at.exception
    assert "Deleted GCCS" in at.success[0].value
    assert not store.has_run(gccs["run_id"])
    with pytest.raises(KeyError):
        store.checkpoint_bytes(gccs["run_id"])
    # the other run is intact: record, checkpoint, latents and cached result
    assert store.has_run(ce["run_id"]) and store.checkpoint_bytes(ce["run_id"])
    assert store.get_latents(ce["run_id"]) and len(store.list_results(ce["run_id"], "accuracy")) == 1
    assert list(at.dataframe[0].value["run_id"]) == [ce["run_id"]]


# --- Examples -----------------------------------------------------------------------------------------
def test_examples_page_on_an_empty_store_says_how_to_fill_it(app_store):
    at = page("examples")
    assert "The store is empty" in at.info[0].value
    assert not at.image


def test_examples_page_generates_a_gallery_once_and_keeps_it(populated):
    store, ce, gccs, _ = populated
    at = page("examples")
    assert at.multiselect[0].value == [gccs["run_id"], ce["run_id"]]  # newest first, both by default
    assert "Press Generate" in at.info[0].value and not at.image
    at.selectbox(key="examples-attack").set_value("fgsm")
    at.number_input(key="examples-count").set_value(3)
    at.run()
    button(at, "Generate").click()
    at.run()  # submitted: the page thread only shows the job's progress
    assert not at.exception, at.exception
    assert at.session_state["examples-pending"] or at.session_state["examples-galleries"]
    deadline = time.time() + 120
    while at.session_state["examples-pending"] and time.time() < deadline:
        time.sleep(0.1)
        at.run()
    assert not at.exception, at.exception
    assert len(at.image) == 3 * (1 + 2 * 2)  # per image: clean, then perturbation and adversarial per run
    captions = [c for image in at.image for c in image.captions]
    assert captions[0] == "#1 · true 0"  # the first test image of class 0
    # the perturbation's size under it; both predictions under the adversarial image they belong to
    assert captions[1] == "‖δ‖∞ 0.100" and captions[2].startswith("clean: ") and " → adv: " in captions[2]
    pairs = [c for c in captions if c.startswith("clean: ")]
    assert len(pairs) == 3 * 2  # one per image and run
    for c in pairs:
        clean, adv = c.split(" → ")
        assert ("✓" in clean) != ("✗ wrong" in clean) and ("✓" in adv) != ("✗ wrong" in adv)
    gallery = at.session_state["examples-galleries"]
    (settings, first), = gallery.items()
    # a rerun (any widget touched elsewhere) draws the same gallery without computing it again
    at.run()
    assert len(at.image) == 15 and at.session_state["examples-galleries"][settings] is first
    assert download_labels(at)[-2:] == ["CSV", "JSON"]
    # a minimal attack has no ε to choose; its gallery is kept beside the first
    at.selectbox(key="examples-attack").set_value("deepfool")
    at.run()
    assert not any(ni.label == "ε" for ni in at.number_input)
    generate(at)
    assert not at.exception and len(at.image) == 15 and len(at.session_state["examples-galleries"]) == 2


def test_examples_page_offers_every_attack_with_its_parameters(populated):
    from engine.attacks import ATTACKS

    at = page("examples")
    for name, spec in ATTACKS.items():
        at.selectbox(key="examples-attack").set_value(name)
        at.run()
        assert not at.exception, (name, at.exception)
        # a label names the parameter, and says what a special value means: "alpha (0 = 2.5·ε/steps)"
        shown = {w.label.split(" (")[0] for w in list(at.number_input) + list(at.checkbox) + list(at.selectbox)}
        # restarts: the gallery shows one run of the attack and refuses more, so it has no input
        assert {p.name for p in spec.params if p.name != "restarts"} <= shown and "restarts" not in shown, name


def test_examples_page_bad_input_is_a_message(populated):
    at = page("examples")
    at.radio(key="examples-how").set_value("by test index")
    at.run()
    at.text_input(key="examples-indices").set_value("0, x")
    at.run()
    assert "images: test indices must be whole numbers separated by commas; got 'x'" in at.error[0].value
    at.text_input(key="examples-indices").set_value("0, 4500")
    at.run()
    generate(at)  # the job fails; the page shows why
    assert not at.exception and "from 0 to 449; got 4500" in at.error[0].value
    # the input itself holds the bounds: no step count below 1 can be typed in
    steps = at.number_input(key="examples-pgd-steps")
    assert steps.min == 1 and "Allowed: ≥ 1" in steps.help
    alpha = at.number_input(key="examples-pgd-alpha")
    assert alpha.label == "alpha (0 = 2.5·ε/steps)" and (alpha.min, alpha.max) == (0.0, 1.0)


# --- export helpers -------------------------------------------------------------------------------------
def export_app():
    import plotly.graph_objects as go

    from ui.export import plotly_chart, table_downloads

    plotly_chart(go.Figure(go.Scatter(x=[0, 1], y=[1, 0])), "accuracy vs ε (digits)", key="fig")
    table_downloads([{"a": 1, "b": None}], "table", key="tab")


def test_figures_export_png_from_the_modebar_and_html_on_click():
    at = AppTest.from_function(export_app)
    at.run()
    assert not at.exception, at.exception
    config = json.loads(at.get("plotly_chart")[0].proto.config)
    assert config["toImageButtonOptions"] == {"format": "png", "filename": "accuracy-vs-digits", "scale": 2}
    html, csv_button, json_button = at.get("download_button")
    assert [b.proto.label for b in (html, csv_button, json_button)] == ["HTML", "CSV", "JSON"]
    assert html.proto.deferred_file_id  # the 4.7 MB page is built only when clicked


def test_figure_html_is_standalone():
    import plotly.graph_objects as go

    from ui.export import figure_html

    page_text = figure_html(go.Figure(go.Bar(x=["ce"], y=[0.9])))
    assert page_text.startswith("<html>") and "<script src=" not in page_text  # nothing to fetch
    assert "Plotly.newPlot" in page_text and len(page_text) > 1_000_000  # plotly.js inside


def test_a_run_keeps_the_name_tags_and_notes_a_user_gives_it(populated, tmp_path):
    from cache.check import check_store
    from engine.report import runs_table

    store, ce, gccs, _ = populated
    store.put_note(ce["run_id"], {"name": "baseline", "tags": "fig4, seed0", "notes": "x" * 5000})
    assert store.notes()[ce["run_id"]] == {"name": "baseline", "tags": "fig4, seed0", "notes": "x" * 2000}
    rows = {r["run_id"]: r for r in runs_table(store)}
    assert (rows[ce["run_id"]]["name"], rows[gccs["run_id"]]["name"]) == ("baseline", "")
    assert rows[ce["run_id"]]["tags"] == "fig4, seed0" and len(rows[ce["run_id"]]["notes"]) == 2000
    assert check_store(store.path)["clean"]  # a note is a row the store knows
    with pytest.raises(KeyError, match="not in the store"):
        store.put_note("0" * 16, {"name": "ghost"})
    store.put_note(gccs["run_id"], {"name": "gone soon"})
    store.delete_run(gccs["run_id"])  # a run's note goes with it
    assert set(store.notes()) == {ce["run_id"]} and check_store(store.path)["clean"]
    store.put_note(ce["run_id"], {})  # an empty note removes it
    assert store.notes() == {}


def test_the_runs_table_shows_the_reading_columns_first_and_the_rest_on_request(populated):
    store, ce, _, _ = populated
    at = page("runs")
    order = list(at.dataframe[0].proto.column_order)
    assert order[:8] == ["name", "run_id", "objective", "dataset", "model", "seed", "epochs", "clean_acc"]
    assert "worst_case@0.1" in order and order[-2:] == ["tags", "notes"] and "r_ab" not in order
    at.multiselect(key="runs-columns").set_value(["r_ab", "train_seconds"]).run()
    assert {"r_ab", "train_seconds"} <= set(at.dataframe[0].proto.column_order)


def test_the_runs_page_offers_one_attack_at_its_first_budget_above_zero(populated):
    store, ce, _, result = populated
    data = load_dataset("digits")
    model, objective, _ = load_run(store, ce["run_id"])
    accuracy_point(store, ce["run_id"], model, objective, data.x_test[:100], data.y_test[:100], "pgd",
                   {"steps": 5, "alpha": 0.01}, 0.0)
    at = page("runs")
    at.selectbox(key="runs-attack").set_value("pgd").run()
    assert at.selectbox(key="runs-eps-pgd").options == ["0", "0.1"]
    assert at.selectbox(key="runs-eps-pgd").value == 0.1  # not ε 0, which is the clean accuracy
