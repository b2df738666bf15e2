"""Streamlit pieces shared by the pages: the job panel, the live comparison, the latent panels.

Live regions are ``st.fragment``s on a timer: they redraw from the job record (a copy taken under
its lock) and never block the script; once the job they follow has finished they trigger one full
rerun and stop ticking.
"""
from __future__ import annotations

import html
import math
import re
import time
from typing import Any

import numpy as np
import streamlit as st

from engine.config import DEFAULTS, SETTINGS
from engine.data import DatasetUnavailable, dataset_status
from engine.jobs import CANCELLED, DONE, FAILED, FINISHED, QUEUED, RUNNING, Job
from engine.latent import EMBEDDINGS, embedding_2d
from engine.latent_samples import latent_samples
from engine.objectives import ConfigError, Objective, Param
from engine.report import newest_comparison
from ui.figures import (X_AXES, accuracy_figure, diagnostic_names, diagnostics_figure, embedding_figure,
                        embedding_hover_chart, latent_3d_figure, loss_figure, simplex_figure, simplex_hover_chart)
from ui.state import get_manager, get_store, store_errors

REFRESH_S = 1.0  # the job panel: cheap text and progress bars
CHART_REFRESH_S = 2.0  # live charts: each redraw costs the browser a re-render of every figure
# At most this many figures a live region redraws on each tick; the rest wait for the job's end:
# every tick costs the browser a redraw of each, and WebGL views (3-D) cost the most.
LIVE_PLOT_BUDGET = 6
THREE_D_RUNS = 2  # 3-D views drawn by default for up to this many runs side by side
PANELS_PER_ROW = 3  # runs' panels side by side; more go in rows below


def fmt_seconds(seconds: float | None) -> str:
    """"4.2s", "42s", then h:mm:ss ("0:06:17", "27:46:40"): a long ETA never reads as minutes."""
    if seconds is None or not math.isfinite(seconds):
        return "–"
    if seconds < 10:
        return f"{seconds:.1f}s"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


# --- job panel (sidebar) ---------------------------------------------------------------------------
def job_panel(limit: int = 6) -> None:
    """Progress of the newest jobs with epoch, samples/s and ETA, and a cancel button each."""
    manager = get_manager()

    @st.fragment(run_every=REFRESH_S)
    def panel():
        jobs = manager.list(limit)
        st.markdown("**Jobs**")
        if not jobs:
            st.caption("No jobs yet. Start one from the Start or Train page.")
        for job in jobs:
            with st.container(border=True):
                started = time.strftime("%H:%M:%S", time.localtime(job.created))
                st.markdown(f"<small><b>{html.escape(job.title)}</b> · {job.device} · {started}</small>",
                            unsafe_allow_html=True)
                if job.status == RUNNING and job.kind != "train":  # evaluations count points, not epochs
                    st.progress(min(job.progress, 1.0), text=f"{job.detail or 'starting'} · ETA {fmt_seconds(job.eta)}")
                    if st.button("Cancel", key=f"cancel-{job.id}"):
                        manager.cancel(job.id)
                elif job.status == RUNNING:
                    speed = f"{job.samples_per_s:,.0f} samples/s" if job.samples_per_s else "warming up"
                    st.progress(min(job.progress, 1.0),
                                text=f"epoch {job.epoch}/{job.total_epochs} · step {job.step}/{job.steps_per_epoch}"
                                     f" · {speed} · ETA {fmt_seconds(job.eta)}")
                    if st.button("Cancel", key=f"cancel-{job.id}"):
                        manager.cancel(job.id)
                elif job.status == QUEUED:
                    st.caption("queued")
                    if st.button("Cancel", key=f"cancel-{job.id}"):
                        manager.cancel(job.id)
                elif job.status == DONE:
                    reused = all(r.get("reused") for r in job.runs) and job.runs
                    took = fmt_seconds((job.finished or 0) - (job.started or 0))
                    st.caption(f":material/check_circle: done in {took}" + (" (reused from the store)" if reused else ""))
                elif job.status == FAILED:  # one line; the whole message folded; dismissed on request
                    first = (job.error or "failed").strip().splitlines()[0]
                    st.markdown(f"<small style='color:#e0453a'><b>failed</b>: {html.escape(first[:90])}"
                                f"{'…' if len(first) > 90 else ''}</small>", unsafe_allow_html=True)
                    details, dismiss = st.columns([3, 1])
                    with details.expander("details"):
                        st.text(job.error)
                    if dismiss.button("Dismiss", key=f"dismiss-{job.id}", help="Remove this card from the panel"):
                        manager.dismiss(job.id)
                        st.rerun(scope="fragment")
                elif job.status == CANCELLED:
                    st.caption(":material/cancel: cancelled; nothing was stored" if job.kind == "train" else
                               ":material/cancel: cancelled; the points it finished are kept")

    panel()


# --- warnings -------------------------------------------------------------------------------------------
def warning_groups(warnings: list[str]) -> list[tuple[str, list[str]]]:
    """Warnings grouped by the run they name ("MMC (ab12cd) · pgd: …" → "MMC (ab12cd)"), in order."""
    groups: dict[str, list[str]] = {}
    for warning in warnings:
        head = warning.split(":", 1)[0]
        run = head.split(" · ", 1)[0] if ":" in warning else "other"
        groups.setdefault(run, []).append(warning)
    return list(groups.items())


def warning_summary(warnings: list[str]) -> None:
    """One line per run (its first finding and how many more), every warning in full folded below:
    eleven warnings of one run (one per ε and attack) read as one line, not eleven boxes."""
    if not warnings:
        return
    lines = []
    for run, found in warning_groups(warnings):
        first = found[0].split(": ", 1)[-1] if run != "other" else found[0]
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        lines.append(f"**{run}**: {first}{more}")
    st.warning("  \n".join(lines), icon=":material/warning:")
    if len(warnings) > len(lines):
        with st.expander(f"all {len(warnings)} warnings"):
            st.markdown("\n".join(f"- {w}" for w in warnings))


# --- objectives' constants -------------------------------------------------------------------------
def param_input(objective: type[Objective] | str, param: Param, key: str, preset: tuple[str, Any] | None = None) -> Any:
    """An input for one constant of an objective (or an attack: pass its description as a string),
    prefilled with its default, or with ``preset = (preset name, value)`` where a preset sets it."""
    # a value with a meaning of its own (PGD's alpha 0 = 2.5·ε/steps) is said on the label, not only in the help
    special = re.search(r"\b0 = ([^;()]+)", param.help or "")
    label = f"{param.name} (0 = {special.group(1).strip()})" if special else param.name
    source = objective if isinstance(objective, str) else objective.citation
    bounds = []
    if param.minimum is not None:
        bounds.append(f"{'>' if param.exclusive_minimum else '≥'} {param.minimum:g}")
    if param.maximum is not None:
        bounds.append(f"≤ {param.maximum:g}")
    help_text = f"{param.help}. Default {param.default} ({source})." + (f" Allowed: {', '.join(bounds)}." if bounds else "")
    value = param.default
    if preset is not None:
        value = param.kind(preset[1])
        help_text += f" Prefilled with the {preset[0]} preset's {value} (see the note above)."
    if param.choices is not None:
        return st.selectbox(label, param.choices, index=param.choices.index(value), help=help_text, key=key)
    if isinstance(param.default, bool):
        return st.checkbox(label, value=value, help=help_text, key=key)
    kind = int if isinstance(param.default, int) else float
    limits = {"min_value": kind(param.minimum) if param.minimum is not None and not param.exclusive_minimum else None,
              "max_value": kind(param.maximum) if param.maximum is not None else None}
    if kind is int:
        return st.number_input(label, value=value, step=1, help=help_text, key=key, **limits)
    return st.number_input(label, value=float(value), format="%g", help=help_text, key=key, **limits)


def setting_input(name: str, container=st, value: Any = None, **widget) -> Any:
    """The input for training setting ``name``, built from its declaration in ``engine.config``: its
    label, help, allowed values and bounds (stated in the help); ``value`` prefills it (default: the
    setting's default); ``widget`` passes on, e.g. ``format_func`` or ``key``."""
    s = SETTINGS[name]
    value = DEFAULTS[name] if value is None else value
    bounds = s.bounds()
    help_text = " ".join(t for t in (s.help, "" if s.choices or s.kind is bool or not bounds
                                     else f"Allowed: {bounds}.") if t) or None
    if s.choices:
        return container.selectbox(s.label, s.choices, index=list(s.choices).index(value), help=help_text, **widget)
    if s.kind is bool:
        return container.checkbox(s.label, value=bool(value), help=help_text, **widget)
    if s.kind is str:
        return container.text_input(s.label, value=value, help=help_text, **widget)
    limits = {"min_value": None if s.low is None else s.kind(s.low),
              "max_value": None if s.high is None else s.kind(s.high)}
    if s.kind is int:
        return container.number_input(s.label, value=int(value), step=1, help=help_text, **limits, **widget)
    return container.number_input(s.label, value=float(value), format="%g", help=help_text, **limits, **widget)


def dataset_notice(dataset: str, container=st, say_ready: bool = True) -> bool:
    """Beside a dataset's picker: where it is read from (unless not ``say_ready``), or that it is
    missing, where the workbench looked and how to get it (``engine.data.dataset_status``). Returns
    whether it is ready."""
    status = dataset_status(dataset)
    if status["ready"]:
        if say_ready:
            container.caption(f"ready: {status['source']}")
    else:
        container.warning(f"{status['label']} is not on this machine (looked in {', '.join(status['looked_in'])}). "
                          f"To get it: {status['how']}.")
    return status["ready"]


def attack_param_inputs(attack: str, key: str, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """One input per parameter of a registry attack, four to a row, prefilled with the paper defaults.
    Parameters named in ``exclude`` get no input (and no value: the engine's default applies), e.g.
    restarts where a page shows one run of the attack and the engine refuses more."""
    from engine.attacks import ATTACKS

    spec, values = ATTACKS[attack], {}
    params = [p for p in spec.params if p.name not in exclude]
    if params:
        cols = st.columns(min(len(params), 4))
        for i, param in enumerate(params):
            with cols[i % len(cols)]:
                values[param.name] = param_input(spec.title, param, key=f"{key}-{attack}-{param.name}")
    return values


# --- live comparison ---------------------------------------------------------------------------------
def run_label(objective: str, run_id: str) -> str:
    return f"{objective.upper()} ({run_id[:6]})"


def job_runs(job: Job) -> list[dict[str, Any]]:
    return [{"label": run_label(r["objective"], r["run_id"]), "objective": r["objective"], "run_id": r["run_id"],
             "history": job.history.get(r["run_id"], [])} for r in job.runs]


def released_note(job: Job) -> str:
    return (f"{job.title} finished long ago and its live view was released (the app keeps the newest "
            f"{get_manager().keep_finished} finished jobs whole). What it computed is in the store: see the Runs, "
            "Latent and Robustness pages.")


def live_fragment(job_id: str, body, key: str) -> None:
    """Run ``body(job)`` in a fragment that ticks while the job is queued or running."""
    manager = get_manager()
    active = manager.get(job_id).status not in FINISHED

    @st.fragment(run_every=CHART_REFRESH_S if active else None)
    def region():
        job = manager.get(job_id)
        if job.released:
            st.info(released_note(job))
            return
        with store_errors():
            body(job)
        if active and job.status in FINISHED:
            st.rerun(scope="app")  # one last full redraw, after which the region stops ticking

    region()


def status_line(job: Job) -> None:
    if job.status == FAILED:
        lines = (job.error or "").strip().splitlines() or ["no message"]
        st.error(f"The job failed: {lines[0]}")
        if len(lines) > 1:
            with st.expander("the whole message"):
                st.text(job.error)
    elif job.status == CANCELLED:
        st.warning("The job was cancelled; nothing was stored.")
    elif job.status == QUEUED:
        st.info("Queued: waiting for the worker of this device.")
    elif job.status == RUNNING:
        st.caption(f"Training on {job.device}: epoch {job.epoch}/{job.total_epochs}, "
                   f"ETA {fmt_seconds(job.eta)}. Charts refresh every {CHART_REFRESH_S:g} s.")
    for warning in job.warnings:
        st.warning(warning)


def comparison_view(job_id: str, key: str) -> None:
    """Accuracy and loss curves of every run of a job, on shared axes, live while it trains."""
    c1, c2, c3 = st.columns([2, 1, 2])
    x_axis = c1.radio("x-axis", list(X_AXES), format_func=X_AXES.get, horizontal=True, key=f"{key}-x")
    log_y = c2.checkbox("log-scale loss", value=True, key=f"{key}-log")
    # drawn on request: each is one more figure for the browser to redraw on every tick
    diagnostics = c3.checkbox("diagnostics over epochs (mean ‖z‖, distance to own centre, …)", value=False,
                              key=f"{key}-diagnostics")

    def body(job: Job):
        status_line(job)
        runs = job_runs(job)
        if not any(r["history"] for r in runs):
            if job.status not in FINISHED:
                st.caption("Waiting for the first epoch…")
            return
        st.plotly_chart(accuracy_figure(runs, x_axis), key=f"{key}-acc")
        st.plotly_chart(loss_figure(runs, x_axis, log_y), key=f"{key}-loss")
        st.dataframe(summary_rows(runs), hide_index=True)
        if diagnostics:
            for name in diagnostic_names(runs):
                st.plotly_chart(diagnostics_figure(runs, name, x_axis), key=f"{key}-diag-{name}")

    live_fragment(job_id, body, key)


def summary_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for run in runs:
        if not run["history"]:
            continue
        last = run["history"][-1]
        rows.append({"run": run["label"], "epoch": last["epoch"], "test accuracy": round(last["test_acc"], 4),
                     "macro F1": round(last["test_f1"], 4),
                     "r_AB (±95% CI)": f"{last['r_ab']:.2f} ± {last['r_ab_ci']:.2f}",
                     "train seconds": round(last["train_seconds"], 2), "samples/s": round(last["samples_per_s"])})
    return rows


def worst_case_view(job_ids: list[str], key: str) -> None:
    """The headline robust accuracy of the runs the finished jobs stored: the per-sample worst case
    cached for each (``engine.report.worst_case_rows``), or how to evaluate it. Nothing is attacked here."""
    from engine.report import worst_case_rows

    manager = get_manager()
    run_ids = list(dict.fromkeys(run["run_id"] for job in map(manager.get, job_ids) if job.status == DONE
                                 for run in job.runs))
    if not run_ids:
        return
    st.subheader("Robust accuracy: the worst case")
    st.caption("The per-sample worst case over every ℓ∞ attack tried on each run, read from the cache: the share of "
               "test samples classified correctly clean that no attack broke. One attack's accuracy alone is only an "
               "upper bound on it. Evaluate on the Robustness page (the robust suite) or with "
               "`python -m engine evaluate RUN --suite robust`.")
    st.dataframe(worst_case_rows(get_store(), run_ids), hide_index=True, key=f"{key}-worst-case")


# --- stored runs ---------------------------------------------------------------------------------------
def stored_run_label(record: dict[str, Any]) -> str:
    s = record["settings"]
    adv = f" · adv. {s['adv_attack']}" if s.get("adv_attack", "none") != "none" else ""
    return (f"{run_label(record['objective'], record['run_id'])} · {record['dataset']} · {record['model']} · "
            f"{s['epochs']} ep · seed {s['seed']}{adv} · acc {record['final']['test_acc']:.3f}")


def listing_warning(listing) -> None:
    """One warning naming the stored entries a listing had to leave out (``cache.Listing.problems``)."""
    from cache import problems_message

    if getattr(listing, "problems", None):
        st.warning(problems_message(listing.problems), icon=":material/warning:")


def stored_run_picker(store, key: str, default_count: int = 2) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """A multiselect of stored runs (newest first), starting at the newest job's runs
    (``engine.report.newest_comparison``; a lone run: the newest ``default_count``). Returns the chosen
    ids and every record by id; an empty store or runs of several datasets get a message instead."""
    records = store.list_runs()
    listing_warning(records)
    if not records:
        st.info("The store is empty. Train something on the Start or Train page, or with `python -m engine train`.")
        return [], {}
    by_id = {r["run_id"]: r for r in records}
    # the newest job's runs (six objectives trained together come up together), else the newest few
    default = newest_comparison(records)
    if len(default) < 2:
        default = list(by_id)[:default_count]
    chosen = st.multiselect("runs", list(by_id), default=default,
                            format_func=lambda r: stored_run_label(by_id[r]), key=f"{key}-runs")
    datasets = sorted({by_id[r]["dataset"] for r in chosen})
    if len(datasets) > 1:
        st.error(f"The chosen runs are on different datasets ({', '.join(datasets)}); choose runs of one dataset.")
        return [], by_id
    return chosen, by_id


# --- latent views ----------------------------------------------------------------------------------------
def class_picker(num_classes: int, class_names: list[str], key: str) -> list[int] | None:
    """Three classes (default the GCCS paper's MNIST choice 0, 1, 9)."""
    defaults = [0, 1, 9] if num_classes >= 10 else [0, 1, 2]
    cols = st.columns(3)
    options = list(range(num_classes))
    name = (lambda c: f"{c}: {class_names[c]}" if class_names and class_names[c] != str(c) else str(c))
    chosen = [cols[i].selectbox(f"class {'abc'[i]}", options, index=defaults[i], format_func=name,
                                key=f"{key}-class-{i}") for i in range(3)]
    if len(set(chosen)) < 3:
        st.warning("Choose three different classes.")
        return None
    return chosen


@st.cache_data(max_entries=64, show_spinner="embedding the latents…")
def _embedding(z: np.ndarray, method: str) -> np.ndarray:
    return embedding_2d(z, method)


@st.cache_data(max_entries=64, show_spinner="classifying the latent points' test images…")
def _latent_samples(_store, run_id: str, checkpoint: str) -> dict[str, Any]:
    # keyed by run and checkpoint digest (a retrained run keeps its id, not its checkpoint); an
    # exception is not cached, so a dataset that turns up later is found on the next rerun
    return latent_samples(_store, run_id)


def hover_samples(store, run_id: str) -> dict[str, Any] | None:
    """The images, labels and final predictions behind a stored run's latent points, for the hover
    views (``engine.latent_samples.latent_samples``), computed once per run: changing the classes,
    the epoch or ε redraws without recomputing them. None, with a caption saying why, when they cannot
    be had (the run's dataset is not on this machine, or its latents do not name their test samples)."""
    try:
        return _latent_samples(store, run_id, store.checkpoint_digest(run_id))
    except (ConfigError, DatasetUnavailable) as exc:
        st.caption(f"{run_id[:6]}: the views show no images on hover ({exc}).")
        return None


def panel_columns(count: int, per_row: int = PANELS_PER_ROW) -> list:
    """``count`` columns of equal width, at most ``per_row`` side by side, further ones in rows below:
    six runs in six columns squeeze each figure's legend over its plot."""
    columns = []
    for start in range(0, count, per_row):
        columns += st.columns(per_row)[:min(per_row, count - start)]
    return columns


def latent_panels(entries: list[dict[str, Any]], classes: list[int], class_names: list[str], key: str,
                  live: bool = False) -> None:
    """Per run, side by side: the simplex view, the 3-D view, r_AB and per-class kurtosis.

    ``entries``: dicts with label, z, y, geometry (or None) and metrics (an epoch's metrics); a stored
    run's also samples (``hover_samples``, or None) and prediction_note (None at the final epoch): with
    samples its simplex and all-classes views show each point's image, label and prediction on hover.
    ``live``: redrawn on a timer while a job trains: the simplex view of at most ``LIVE_PLOT_BUDGET``
    runs, the 3-D and all-classes views (WebGL, t-SNE) once the job has finished."""
    if not entries:
        st.caption("No latents yet.")
        return
    if live:
        shown = entries[:LIVE_PLOT_BUDGET]
        st.caption("While the job trains: the simplex view" + (f" of the first {len(shown)} of {len(entries)} runs"
                   if len(shown) < len(entries) else "") + f", every {CHART_REFRESH_S:g} s; the 3-D and "
                   "all-classes views (and every run) appear when it has finished.")
        for col, entry in zip(panel_columns(len(shown)), shown):
            with col:
                m = entry["metrics"]
                st.markdown(f"**{entry['label']}** · epoch {m['epoch']} · acc {m['test_acc']:.3f} · r_AB {m['r_ab']:.2f}")
                st.plotly_chart(simplex_figure(entry["z"], entry["y"], classes, entry["geometry"], "simplex view",
                                               class_names), key=f"{key}-{entry['label']}-2d")
        return
    if any(entry.get("samples") is not None for entry in entries):
        earlier = any(entry.get("prediction_note") for entry in entries)
        st.caption("Hover a point: its image, label and prediction" + (
            " (at an epoch before the last, the final model's prediction)." if earlier else "."))
    # each 3-D view is a WebGL scene, and the page's other figures wait while they draw
    show_3d = st.checkbox("3-D views", value=len(entries) <= THREE_D_RUNS, key=f"{key}-3d-views",
                          help=f"The three latent coordinates of each run; on by default for up to {THREE_D_RUNS} "
                               "runs (each is a WebGL scene, slow to draw in numbers).")
    cols = panel_columns(len(entries))
    for col, entry in zip(cols, entries):
        with col:
            st.markdown(f"**{entry['label']}** · epoch {entry['metrics']['epoch']}")
            z, geometry = entry["z"], entry["geometry"]
            views = entry.get("views") or {}
            if views:  # e.g. PCL: each supervised layer with its prototypes
                space = st.selectbox("space", ["latent z (logits)"] + list(views), key=f"{key}-{entry['label']}-space",
                                     help="The objective's extra spaces: for PCL each supervised layer's branch "
                                          "features, drawn around that layer's pull prototypes.")
                if space in views:
                    z, geometry = np.asarray(views[space]["z"], np.float32), views[space]["geometry"]
            samples, note = entry.get("samples"), entry.get("prediction_note")
            if samples is not None:  # the same test points in every space, so the hover holds for each
                st.altair_chart(simplex_hover_chart(z, entry["y"], classes, geometry, samples, "simplex view",
                                                    class_names, note), key=f"{key}-{entry['label']}-2d", width="content")
            else:
                st.plotly_chart(simplex_figure(z, entry["y"], classes, geometry, "simplex view", class_names),
                                key=f"{key}-{entry['label']}-2d")
            if show_3d:
                st.plotly_chart(latent_3d_figure(z, entry["y"], classes, geometry, "3-D view", class_names),
                                key=f"{key}-{entry['label']}-3d")
            method = st.radio("all classes", EMBEDDINGS, horizontal=True, key=f"{key}-{entry['label']}-embedding",
                              format_func=str.upper, help="PCA: the latent's two directions of largest variance "
                              "(distances kept); t-SNE: neighbourhoods kept, distances not (a few seconds per "
                              "snapshot, computed when asked)")
            points = _embedding(np.ascontiguousarray(z), method)
            if samples is not None:
                st.altair_chart(embedding_hover_chart(points, np.asarray(entry["y"]), samples,
                                                      f"all classes · {method.upper()}", class_names, note),
                                key=f"{key}-{entry['label']}-embedding-plot", width="content")
            else:
                st.plotly_chart(embedding_figure(points, np.asarray(entry["y"]), f"all classes · {method.upper()}",
                                                 class_names), key=f"{key}-{entry['label']}-embedding-plot")
            m = entry["metrics"]
            kurt = m["kurtosis"]
            c1, c2 = st.columns(2)
            c1.metric("r_AB (all classes)", f"{m['r_ab']:.2f}", help=f"± {m['r_ab_ci']:.2f} (95% CI over "
                      "ordered class pairs); GCCS Eq. 6 on the full test split")
            c2.metric("test accuracy", f"{m['test_acc']:.3f}")
            st.dataframe([{"class": str(c), "kurtosis": None if np.isnan(kurt[c]) else round(kurt[c], 2)}
                          for c in classes] + [{"class": "mean (all)", "kurtosis": round(float(np.nanmean(kurt)), 2)}],
                         hide_index=True)
            st.caption("Kurtosis per class, mean over latent components (3 for a Gaussian).")


def job_latent_entries(job: Job) -> list[dict[str, Any]]:
    entries = []
    for run in job.runs:
        snap, hist = job.latents.get(run["run_id"]), job.history.get(run["run_id"])
        if snap is None or not hist:
            continue
        entries.append({"label": run_label(run["objective"], run["run_id"]), "z": np.asarray(snap["z"], np.float32),
                        "y": np.asarray(snap["y"]), "geometry": snap["geometry"], "metrics": hist[-1],
                        "views": snap.get("views", {})})
    return entries
