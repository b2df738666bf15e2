"""Every page under Streamlit's AppTest, with real background jobs and the real store."""
import math
import re
import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def new_app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    return at


def run_until(at: AppTest, done, timeout: float = 120.0) -> AppTest:
    """Rerun (as the live fragments would on their timer) until ``done(at)`` or time runs out."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        at.run()
        assert not at.exception, at.exception
        if done(at):
            return at
        time.sleep(0.3)
    raise AssertionError("timed out waiting for the page")


def button(at: AppTest, text: str):
    return next(b for b in at.button if text in b.label)


def texts(node):
    """Every string shown under a node (blocks nest: the job panel is a fragment in the sidebar)."""
    children = getattr(node, "children", None)
    if children:
        for child in children.values():
            yield from texts(child)
    elif isinstance(getattr(node, "value", None), str):
        yield node.value


def sidebar_text(at: AppTest) -> str:
    return " ".join(texts(at.sidebar))


def tooltip_titles(chart) -> set[str]:
    """The tooltip entries of an Altair chart as AppTest sees it (a vega_lite_chart element), in any layer."""
    spec = json.loads(chart.proto.spec)
    return {t["title"] for part in [spec, *spec.get("layer", [])]
            for t in part.get("encoding", {}).get("tooltip", [])}


def test_start_page_renders_without_a_job():
    at = new_app()
    assert not at.exception
    assert at.title[0].value == "Simplex Workbench"
    assert button(at, "Train CE vs GCCS")
    assert "Jobs" in sidebar_text(at)


@pytest.mark.slow
def test_start_page_comparison_trains_and_draws_its_charts():
    at = new_app()
    at.number_input[0].set_value(3)
    at.text_input(key="start-seeds-quick").set_value("0")  # one seed: the live view alone (several: test_groups)
    button(at, "Train CE vs GCCS").click()
    # the worst-case table appears once the job is done (the last epoch's row is drawn a moment before)
    at = run_until(at, lambda a: len(a.get("plotly_chart")) >= 6 and (a.dataframe[0].value["epoch"] == 3).all()
                   and any("evaluated on" in d.value.columns for d in a.dataframe))
    keys = [c.key for c in at.get("plotly_chart")]
    # accuracy + loss curves, then (the job done) a simplex, a 3-D and an all-classes view for each of CE and GCCS
    assert keys[:2] == ["start-acc", "start-loss"] and not any("-diag-" in k for k in keys)
    latent = [k for k in keys if k.startswith("start-latent-")]
    assert len(latent) == 6 and sum(k.endswith("-embedding-plot") for k in latent) == 2
    at.checkbox(key="start-diagnostics").check().run()  # the diagnostics are drawn on request
    assert [c.key for c in at.get("plotly_chart")][2:4] == ["start-diag-mean_dist_own_vertex", "start-diag-mean_norm_z"]
    table = at.dataframe[0].value
    assert list(table["run"].str[:4]) == ["CE (", "GCCS"] and (table["epoch"] == 3).all()
    # the headline robust accuracy: not evaluated yet, and the page says how to evaluate it
    (worst,) = [d.value for d in at.dataframe if "evaluated on" in d.value.columns]
    assert list(worst.columns) == ["run", "evaluated on"] and list(worst["run"].str[:4]) == ["CE (", "GCCS"]
    assert worst["evaluated on"].str.startswith("not evaluated: run the robust suite").all()
    # The job panel lists it as done. (AppTest drops the sidebar of an st.navigation app on reruns of the
    # same AppTest object, so the panel is read from a fresh session, as a second browser tab would.)
    panel = sidebar_text(new_app())
    assert "CE vs GCCS · digits · cnn · 3 ep" in panel and "done in" in panel


def test_train_page_renders_with_the_spec_defaults():
    at = new_app()
    at.switch_page("pages/train.py")
    at.run()
    assert not at.exception
    assert at.multiselect[0].value == ["ce", "gccs"]
    values = {ni.label: ni.value for ni in at.number_input}
    assert values["mu_t"] == 70.0 and values["sigma_t"] == 1.0 and values["lam"] == 0.2
    assert values["epochs"] == 100 and values["batch size"] == 200 and values["learning rate"] == 0.01
    assert {sb.label: sb.value for sb in at.selectbox}["kurtosis"] == "abs"


def test_train_page_prefills_the_quick_presets_mat_constants():
    from engine.config import PRESET_PARAMS

    at = new_app()
    at.switch_page("pages/train.py")
    at.run()
    at.multiselect[0].set_value(["mat"])
    at.run()
    assert not at.exception
    values = {ni.key: ni.value for ni in at.number_input}
    for name, value in PRESET_PARAMS["quick"]["mat"].items():
        assert values[f"param-mat-{name}-quick"] == value
    assert values["param-mat-alpha"] == 1.0  # not tuned by the preset: the default
    beta = next(ni for ni in at.number_input if ni.key == "param-mat-beta-quick")
    assert "Default 6.0" in beta.help and "quick preset" in beta.help
    # another data set: the constants' own defaults (TRADES' MNIST values), as on the command line
    next(sb for sb in at.selectbox if sb.label == "dataset").set_value("mnist")
    at.run()
    assert not at.exception
    values = {ni.key: ni.value for ni in at.number_input}
    assert values["param-mat-beta"] == 6.0 and values["param-mat-bibo_eps"] == 0.3 and values["param-mat-bibo_steps"] == 40


def test_train_page_bad_input_is_a_message_not_a_traceback():
    at = new_app()
    at.switch_page("pages/train.py")
    at.run()
    at.multiselect[0].set_value([])
    at.run()
    # checked as the input changes, before any press: the message names the field, Train is off
    assert not at.exception
    assert "objectives: choose at least one" in at.error[0].value
    assert next(b for b in at.get("button") if "Train" in b.label).disabled
    at.multiselect[0].set_value(["ce"]).run()
    assert not at.error and not next(b for b in at.get("button") if "Train" in b.label).disabled
    next(ni for ni in at.number_input if ni.label == "batch size").set_value(100_000).run()
    assert not at.exception and "batch size (batch_size) must be at most the 1,347 training images of digits" \
        in at.error[0].value
    assert next(b for b in at.get("button") if "Train" in b.label).disabled


def test_train_page_states_the_estimated_time_of_the_epochs_chosen():
    from cache import RunStore
    from engine.config import ObjectiveSpec, TrainConfig
    from engine.train import train_job

    (record,) = train_job(TrainConfig(epochs=2, model="mlp", objectives=(ObjectiveSpec("ce"),), device="cpu",
                                      latent_samples=10, seed=41), RunStore())
    per_epoch = record["timing"]["train_seconds"] / 2
    at = new_app()
    at.switch_page("pages/train.py")
    at.run()
    at.multiselect[0].set_value(["ce"])
    next(sb for sb in at.selectbox if sb.label == "model").set_value("mlp")
    at.run()
    assert any(c.value.startswith("epochs 100: about") and "stored runs" in c.value for c in at.caption)
    # far too many epochs: a warning with the time as h:mm:ss, before anything is submitted
    seeds = math.ceil(2 * 3600 / (100_000 * per_epoch))
    next(ni for ni in at.number_input if ni.label == "epochs").set_value(100_000)
    next(ti for ti in at.text_input if ti.label == "seeds").set_value(",".join(map(str, range(seeds)))).run()
    shown = [w.value for w in at.warning if w.value.startswith("epochs 100,000: about")]
    assert len(shown) == 1 and re.search(r"about \d+:\d\d:\d\d of training steps", shown[0]), \
        [c.value for c in at.caption] + [w.value for w in at.warning]
    assert not at.exception
    # an objective never trained here: no estimate, said so
    at.multiselect[0].set_value(["ce", "mat"]).run()
    assert any("no estimate for mat" in c.value for c in [*at.caption, *at.warning])


@pytest.mark.slow
def test_train_page_submits_a_job_and_shows_live_curves():
    at = new_app()
    at.switch_page("pages/train.py")
    at.run()
    at.multiselect[0].set_value(["ce"])
    at.run()
    next(ni for ni in at.number_input if ni.label == "epochs").set_value(2)
    next(ti for ti in at.text_input if ti.label == "seeds").set_value("7")
    next(b for b in at.get("button") if "Train" in b.label).click()
    at = run_until(at, lambda a: a.dataframe and (a.dataframe[0].value["epoch"] == 2).all())
    assert [c.key for c in at.get("plotly_chart")] == ["train-acc", "train-loss"]
    at.checkbox(key="train-diagnostics").check().run()
    assert [c.key for c in at.get("plotly_chart")] == ["train-acc", "train-loss", "train-diag-mean_norm_z"]
    assert at.dataframe[0].value["run"][0].startswith("CE")


@pytest.mark.slow
def test_latent_page_shows_stored_runs_side_by_side():
    from cache import RunStore
    from engine.config import ObjectiveSpec, TrainConfig
    from engine.train import train_job

    train_job(TrainConfig(epochs=2, objectives=(ObjectiveSpec("ce"), ObjectiveSpec("gccs")), device="cpu",
                          latent_samples=300), RunStore())
    at = new_app()
    at.switch_page("pages/latent.py")
    at.run()
    assert not at.exception
    assert len(at.multiselect[0].value) == 2
    # per run: the simplex and all-classes (PCA) views with each point's image on hover (Vega-Lite), the 3-D view
    hover = at.get("vega_lite_chart")
    assert len(hover) == 4 and len(at.get("plotly_chart")) == 2
    assert all({"image", "label", "prediction"} <= tooltip_titles(chart) for chart in hover)
    assert any("Hover a point: its image, label and prediction" in c.value for c in at.caption)
    assert [m.label for m in at.metric][:2] == ["r_AB (all classes)", "test accuracy"]
    # at an earlier epoch the images and labels stay; the prediction is said to be the final model's
    next(s for s in at.select_slider if s.label == "epoch").set_value(1)
    at.run()
    assert not at.exception and len(at.get("vega_lite_chart")) == 4
    assert all("prediction (final model, epoch 2)" in tooltip_titles(chart) for chart in at.get("vega_lite_chart"))
    # the same class twice is refused with a message
    at.selectbox(key="latent-store-class-1").set_value(0)
    at.run()
    assert not at.exception and "three different classes" in at.warning[0].value


@pytest.mark.slow
def test_latent_page_offers_the_supervised_layers_of_a_pcl_run():
    from cache import RunStore
    from engine.config import ObjectiveSpec, TrainConfig
    from engine.train import train_job

    (record,) = train_job(TrainConfig(epochs=2, objectives=(ObjectiveSpec("pcl", {"warmup_epochs": 1}),),
                                      device="cpu", latent_samples=200, seed=11), RunStore())
    at = new_app()
    at.switch_page("pages/latent.py")
    at.run()
    at.multiselect[0].set_value([record["run_id"]])
    at.run()
    space = next(sb for sb in at.selectbox if sb.label == "space")
    assert space.options[0] == "latent z (logits)" and any(o.startswith("layer ") for o in space.options)
    space.set_value(space.options[-1])
    at.run()
    # the layer's points are the same test samples: its simplex and all-classes views keep the image hover
    assert not at.exception and len(at.get("plotly_chart")) == 1 and len(at.get("vega_lite_chart")) == 2


@pytest.mark.slow
def test_train_page_trains_all_seven_objectives_in_lockstep():
    at = new_app()
    at.switch_page("pages/train.py")
    at.run()
    everything = list(at.multiselect[0].options)
    at.multiselect[0].set_value(["ce", "gccs", "mmc", "isce", "mat", "pcl", "center"])
    at.run()
    assert len(everything) == 7
    next(ni for ni in at.number_input if ni.label == "epochs").set_value(1)
    next(ti for ti in at.text_input if ti.label == "seeds").set_value("5")
    next(b for b in at.get("button") if "Train" in b.label).click()
    at = run_until(at, lambda a: a.dataframe and len(a.dataframe[0].value) == 7, timeout=300)
    table = at.dataframe[0].value
    assert [r.split(" ")[0] for r in table["run"]] == ["CE", "GCCS", "MMC", "ISCE", "MAT", "PCL", "CENTER"]
    assert (table["epoch"] == 1).all()


def _train_pair(seed: int) -> list[str]:
    from cache import RunStore
    from engine.config import ObjectiveSpec, TrainConfig
    from engine.train import train_job

    records = train_job(TrainConfig(epochs=3, objectives=(ObjectiveSpec("ce"), ObjectiveSpec("gccs")), device="cpu",
                                    latent_samples=150, seed=seed), RunStore())
    return [r["run_id"] for r in records]


def _spec(chart) -> dict:
    import json

    return json.loads(chart.proto.spec)


def _chart_traces(chart) -> list[str]:
    return [t.get("name", "") for t in _spec(chart)["data"]]


def _chart_titled(at: AppTest, start: str):
    return next(c for c in at.get("plotly_chart") if _spec(c)["layout"]["title"]["text"].startswith(start))


@pytest.mark.slow
def test_robustness_page_sweeps_in_a_job_and_pairs_standard_with_adaptive():
    run_ids = _train_pair(seed=21)
    at = new_app()
    at.switch_page("pages/robustness.py")
    at.run()
    assert not at.exception
    at.multiselect(key="robustness-runs").set_value(run_ids)
    at.run()
    at.text_input(key="robustness-eps-pgd").set_value("0, 5")
    at.run()
    button(at, "Run sweep").click()
    at.run()
    assert not at.exception and "eps must be" in at.error[0].value and "for attack pgd" in at.error[0].value
    at.text_input(key="robustness-eps-pgd").set_value("0, 0.1")
    at.number_input(key="robustness-pgd-steps").set_value(3)
    at.number_input(key="robustness-samples").set_value(100)
    at.run()
    button(at, "Run sweep").click()

    def drawn(a):
        charts = a.get("plotly_chart")
        return charts and sum(len(_chart_traces(c)) for c in charts) >= 6 and not any(
            "fill in" in c.value for c in a.caption)

    at = run_until(at, drawn, timeout=180)
    # the worst case over the three attacks comes first, then PGD's chart
    assert _spec(at.get("plotly_chart")[0])["layout"]["title"]["text"].startswith("Worst case over every attack tried")
    names = _chart_traces(_chart_titled(at, "PGD"))
    # one chart for PGD: CE and GCCS, each with its adaptive and margin PGD drawn beside it, and its worst case
    assert sum(n.startswith("CE (") for n in names) == 4 and sum(n.startswith("GCCS (") for n in names) == 4
    assert any(n.endswith("· adaptive-pgd alone") for n in names) and any(n.endswith("· margin-pgd alone")
                                                                         for n in names), names
    assert sum(n.endswith("· worst case") for n in names) == 2, names
    panel = sidebar_text(new_app())
    assert "pgd sweep · 2 runs · 2 ε" in panel and "done in" in panel


@pytest.mark.slow
def test_robustness_page_runs_the_robust_suite_and_headlines_its_worst_case():
    from ui.figures import UPPER_BOUND_GROUP

    run_ids = _train_pair(seed=23)
    at = new_app()
    at.switch_page("pages/robustness.py")
    at.run()
    at.multiselect(key="robustness-runs").set_value(run_ids)
    at.run()
    assert at.selectbox(key="robustness-suite").value == "robust"
    at.text_input(key="robustness-suite-eps").set_value("0, 5")  # refused with a message, not a traceback
    at.run()
    button(at, "Run suite").click()
    at.run()
    assert not at.exception and "eps must be" in at.error[0].value
    # ε 0.3 on 20 samples: APGD-CE leaves few samples for the cascade, so the whole suite stays cheap
    at.text_input(key="robustness-suite-eps").set_value("0, 0.3")
    at.number_input(key="robustness-suite-samples").set_value(20)
    at.run()
    button(at, "Run suite").click()
    at = run_until(at, lambda a: a.get("plotly_chart") and not any("fill in" in c.value for c in a.caption),
                   timeout=300)
    assert any("one attack alone: an upper bound" in c.value for c in at.caption)
    headline = at.get("plotly_chart")[0]
    assert _spec(headline)["layout"]["title"]["text"] == "Worst case over every attack tried · 20 test samples"
    bold = _spec(headline)["data"]
    assert len(bold) == 2 and all(t["name"].endswith("· worst case") and t["line"]["width"] == 4 for t in bold)
    # every other chart: single attacks, thin, as upper bounds, beside each run's worst case at their ε
    for chart in at.get("plotly_chart")[1:]:
        singles = [t for t in _spec(chart)["data"] if not t["name"].endswith("· worst case")]
        assert singles and all(t["name"].endswith(" alone") and t["line"]["width"] == 1.5
                               and UPPER_BOUND_GROUP in t["hovertemplate"] for t in singles)
    # the members run on every clean-correct sample have curves of their own: APGD-CE, and the adaptive
    # and margin PGD in PGD's chart
    assert _chart_titled(at, "APGD-CE") and _chart_titled(at, "PGD on CE")
    panel = sidebar_text(new_app())
    assert "robust suite · 2 runs · 2 ε" in panel and "done in" in panel


@pytest.mark.slow
def test_latent_page_draws_stored_runs_under_attack():
    from cache import RunStore
    from engine.data import load_dataset
    from engine.robustness import accuracy_point
    from engine.train import load_run

    run_ids = _train_pair(seed=22)
    # a worst case for the first run at ε 0.2 only (one attack: it equals that attack's accuracy)
    store, data = RunStore(), load_dataset("digits")
    cached, _ = accuracy_point(store, run_ids[0], *load_run(store, run_ids[0])[:2], data.x_test[:50],
                               data.y_test[:50], "fgsm", {}, 0.2)
    at = new_app()
    at.switch_page("pages/latent.py")
    at.run()
    at.multiselect(key="latent-store-runs").set_value(run_ids)
    at.run()
    at.text_input(key="shift-eps-pgd").set_value("0.1, 0.2")
    at.run()
    # one run of the attack is shown, so restarts (refused above 1) have no input; PGD's steps do
    labels = {n.label for n in at.number_input}
    assert "steps" in labels and "restarts" not in labels
    button(at, "Compute latents under attack").click()
    # both ε computed: the slider offers them and has followed the newest one
    at = run_until(at, lambda a: any(s.label == "ε" and len(s.options) == 2 for s in a.select_slider)
                   and len([m for m in a.metric if m.label.startswith("accuracy at")]) == 2, timeout=180)
    assert next(s for s in at.select_slider if s.label == "ε").value == 0.2
    alone = [m.label for m in at.metric if m.label.startswith("accuracy at")]
    assert alone == ["accuracy at ε = 0.2 (pgd alone: an upper bound)"] * 2
    (worst,) = [m for m in at.metric if m.label.startswith("worst case")]
    assert worst.label == "worst case at ε = 0.2" and float(worst.value) == pytest.approx(cached["accuracy"], abs=1e-3)
    not_evaluated = [c.value for c in at.caption if c.value.startswith("Worst case at ε")]
    assert not_evaluated == ["Worst case at ε = 0.2: not evaluated: run the robust suite (Robustness page or "
                             "`python -m engine evaluate RUN --suite robust`)."]
    next(s for s in at.select_slider if s.label == "ε").set_value(0.1)
    next(c for c in at.checkbox if c.label.startswith("trajectories")).check()
    at.run()
    assert not at.exception
    alone = [m.label for m in at.metric if m.label.startswith("accuracy at")]
    assert alone == ["accuracy at ε = 0.1 (pgd alone: an upper bound)"] * 2
    assert sum(c.value.startswith("Worst case at ε = 0.1: not evaluated") for c in at.caption) == 2
    at.run()  # moved away from the newest ε, it stays where the viewer put it
    assert next(s for s in at.select_slider if s.label == "ε").value == 0.1
    keys = [c.key for c in at.get("plotly_chart")]
    assert sum(k.startswith("shift-hist-") for k in keys) == 2 and sum(k.startswith("shift-") for k in keys) == 4
    next(c for c in at.checkbox if c.label.startswith("animation")).check()
    at.run()
    # one animation for both runs (one play button and slider), the per-run numbers and histograms below it
    keys = [c.key for c in at.get("plotly_chart")]
    assert not at.exception and keys.count("shift-anim") == 1 and sum(k.startswith("shift-hist-") for k in keys) == 2


def test_a_released_job_is_a_note_on_the_train_page_not_an_error():
    from engine.config import TrainConfig
    from ui.state import get_manager

    at = new_app()
    at.switch_page("pages/train.py")
    at.run()
    manager = get_manager()  # the app's own (st.cache_resource is process-wide)
    keep, manager.keep_finished = manager.keep_finished, 0
    try:
        job_id = manager.submit_training(TrainConfig(epochs=1, model="mlp", latent_samples=10, device="cpu"))
        assert manager.wait(job_id, timeout=120).released
        at.session_state["train_job"] = job_id
        at.run()
    finally:
        manager.keep_finished = keep
    assert not at.exception and not at.error
    assert any("its live view was released" in i.value for i in at.info)


def test_start_and_train_pages_offer_fashion_mnist_and_say_when_it_is_missing(tmp_path, monkeypatch):
    from engine import data

    monkeypatch.setenv("SIMPLEX_DATA_DIR", str(tmp_path))
    # a machine where Debian's package is not installed
    monkeypatch.setitem(data.SYSTEM_COPIES, "fashion-mnist", data.SystemCopy("dataset-fashion-mnist", tmp_path / "none"))
    at = new_app()
    at.radio(key="start-preset").set_value("fmnist-quick")
    at.run()
    assert not at.exception
    start = button(at, "Train CE vs GCCS on fashion-mnist")
    assert start.disabled and "Fashion-MNIST is not on this machine" in at.warning[0].value
    assert str(tmp_path) in at.warning[0].value and "apt-get install dataset-fashion-mnist" in at.warning[0].value
    assert at.number_input(key="start-epochs-fmnist-quick").value == 5
    at.switch_page("pages/train.py")
    at.run()
    next(sb for sb in at.selectbox if sb.label == "dataset").set_value("fashion-mnist")
    at.run()
    assert not at.exception and any("not on this machine" in w.value for w in at.warning)
    monkeypatch.undo()


def test_a_failed_job_s_error_leaves_the_train_page_once_the_dataset_is_changed_back(tmp_path):
    from engine.config import TrainConfig
    from ui.state import get_manager

    at = new_app()
    at.switch_page("pages/train.py")
    at.run()
    manager = get_manager()
    job_id = manager.submit_training(TrainConfig(epochs=1, dataset="svhn", latent_samples=10, device="cpu"))
    assert manager.wait(job_id, timeout=60).status == "failed"
    at.session_state["train_job"] = job_id
    dataset = next(sb for sb in at.selectbox if sb.label == "dataset")
    dataset.set_value("svhn").run()
    assert any("The job failed" in e.value for e in at.error)  # its own settings: the failure is shown
    assert not any("Waiting for the first epoch" in c.value for c in at.caption)
    next(sb for sb in at.selectbox if sb.label == "dataset").set_value("digits").run()
    assert not at.exception and not any("The job failed" in e.value for e in at.error)
    assert any("The last job" in c.value and "failed" in c.value for c in at.caption)


def _panels_app(runs: int, live: bool):
    """``runs`` made-up runs' latent panels (AppTest runs this function's source as the app)."""
    import numpy as np

    from ui.widgets import latent_panels

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    entries = [{"label": f"RUN{i}", "z": rng.normal(size=(60, 3)).astype("float32"), "y": y, "geometry": None,
                "metrics": {"epoch": 1, "test_acc": 0.5, "r_ab": 1.0, "r_ab_ci": 0.1, "kurtosis": [3.0] * 3}}
               for i in range(runs)]
    latent_panels(entries, [0, 1, 2], ["a", "b", "c"], key="panels", live=live)


def test_live_latent_panels_redraw_a_bounded_number_of_2d_views():
    from streamlit.testing.v1 import AppTest

    from ui.widgets import LIVE_PLOT_BUDGET

    at = AppTest.from_function(_panels_app, args=(8, True), default_timeout=60).run()
    assert not at.exception
    keys = [c.key for c in at.get("plotly_chart")]
    # eight runs training: the simplex views of the first LIVE_PLOT_BUDGET, no 3-D (WebGL) or all-classes view
    assert len(keys) == LIVE_PLOT_BUDGET and all(k.endswith("-2d") for k in keys)
    assert f"the first {LIVE_PLOT_BUDGET} of 8 runs" in at.caption[0].value
    # three to a row: six side by side would squeeze each legend over its plot
    assert [round(c.proto.weight, 3) for c in at.columns] == [0.333] * LIVE_PLOT_BUDGET


def test_3d_views_are_on_request_beyond_two_runs():
    from streamlit.testing.v1 import AppTest

    from ui.widgets import THREE_D_RUNS

    at = AppTest.from_function(_panels_app, args=(3, False), default_timeout=60).run()
    assert not at.exception and THREE_D_RUNS == 2
    assert not at.checkbox(key="panels-3d-views").value
    assert not any(k.endswith("-3d") for k in (c.key for c in at.get("plotly_chart")))
    at.checkbox(key="panels-3d-views").check().run()
    assert sum(c.key.endswith("-3d") for c in at.get("plotly_chart")) == 3


def test_the_latent_page_stays_on_a_job_when_it_ends():
    from engine.config import TrainConfig
    from ui.state import get_manager

    manager = get_manager()  # the app's own (st.cache_resource is process-wide)
    job_id = manager.submit_training(TrainConfig(epochs=60, model="mlp", latent_samples=50, device="cpu", seed=43))
    deadline = time.time() + 60
    while not manager.get(job_id).runs and time.time() < deadline:  # offered once it has started
        time.sleep(0.05)
    at = new_app()
    at.switch_page("pages/latent.py")
    at.run()
    at.radio(key="latent-source").set_value(job_id).run()
    assert manager.get(job_id).status == "running" and any("While the job trains" in c.value for c in at.caption)
    assert manager.wait(job_id, timeout=120).status == "done"
    at.run()
    # its label did not change with its status, so the page is still on the job, now with the finished views
    assert at.radio(key="latent-source").value == job_id and not at.exception
    assert not any("While the job trains" in c.value for c in at.caption)
