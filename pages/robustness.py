"""Robustness page: the per-sample worst case over every attack tried (the headline, from a named suite
such as ``robust``) and accuracy vs ε of stored runs under any single attack (an upper bound on it),
computed in background jobs and cached point by point; standard and adaptive attacks paired;
gradient-masking warnings beside the chart they concern (../shared/spec/attacks.md, visuals.md
"Robustness")."""
import streamlit as st

from engine.attacks import ATTACKS, budget_of
from engine.measures import MEASURES, measure_tables
from engine.suites import DEFAULT_SUITE, SUITES, filter_charts, robustness_charts
from engine.jobs import FINISHED
from engine.objectives import ConfigError
from ui.export import plotly_chart, table_downloads
from ui.figures import robustness_figure, transfer_heatmap
from ui.state import open_store, store_errors
from ui.widgets import CHART_REFRESH_S, LIVE_PLOT_BUDGET, attack_param_inputs, stored_run_picker, warning_summary

st.title("Robustness")
st.caption("Accuracy against the true label (also for targeted attacks), model in eval mode, adversarial inputs "
           "projected onto the ε-ball and [0, 1], seeded random starts. Every attack's per-sample outcome is cached per "
           "(run, attack, parameters, ε, test samples, seed): nothing is computed twice, and a cancelled sweep keeps "
           "the points it finished. **Bold line: the per-sample worst case over every attack tried** on the run (a "
           "sample counts as robust only if it is classified correctly clean and no attack breaks it): the headline "
           "robust accuracy. Thin lines: single attacks, one attack alone: an upper bound. The legend groups the lines "
           "by objective (a colour family each, a shade per run; click an objective's title to hide it); "
           "dashed = adversarially trained; open diamonds and a dotted line = the adaptive attack paired with the "
           "standard one.")

store, manager = open_store()
chosen, records = stored_run_picker(store, key="robustness")
if not chosen:
    st.stop()

# Suites, sweeps and the charts share "test samples" and "seed": the worst case is composed from the
# outcomes cached on one sample set and seed, so equal values make sweeps join a suite's worst case.
with st.container(border=True):
    st.markdown("**Worst case (the headline)**")
    c1, c2 = st.columns([2, 3])
    suite = c1.selectbox("suite", list(SUITES), index=list(SUITES).index(DEFAULT_SUITE), key="robustness-suite",
                         help="Every attack of the suite on the same samples; the bold line is their per-sample "
                              "worst case (with every other ℓ∞ attack cached on these samples).")
    c1.caption(SUITES[suite].description)
    suite_eps = c2.text_input("ε grid (empty = the suite's own)", value="", key="robustness-suite-eps",
                              placeholder="0, 0.05, 0.1, 0.2, 0.3",
                              help="Replaces every member's default grid; ε = 0 gives the clean accuracy.")
    c1, c2, _ = st.columns([1, 1, 2])
    suite_samples = c1.number_input("test samples (0 = the whole test split)", min_value=0, value=0, step=100,
                                    key="robustness-suite-samples",
                                    help="The suite runs every member (robust: six attacks, with restarts) on these samples; "
                                         "on a CPU start with a few hundred.")
    suite_seed = c2.number_input("seed (random starts)", min_value=0, value=0, key="robustness-suite-seed")
    if st.button("▶ Run suite", type="primary", key="robustness-run-suite"):
        try:
            job = manager.submit_suite(chosen, suite, suite_eps.strip() or None, suite_samples or None,
                                       int(suite_seed))
            st.session_state["robustness-suite-jobs"] = [job]
        except ConfigError as exc:
            st.error(str(exc))

SWEEPABLE = [name for name, spec in ATTACKS.items() if spec.budget != "none"]
with st.container(border=True):
    st.markdown("**New sweep** · one attack alone: an upper bound on the worst case")
    c1, c2 = st.columns([2, 3])
    attack = c1.selectbox("attack", SWEEPABLE, index=SWEEPABLE.index("pgd"),
                          format_func=lambda a: f"{a} · {ATTACKS[a].title}")
    eps_text = c2.text_input("ε grid (comma-separated)", value=", ".join(f"{e:g}" for e in budget_of(attack).grid),
                             key=f"robustness-eps-{attack}",
                             help=f"{budget_of(attack).label}. attacks.md: MNIST-like data 0 … 0.3, CIFAR-like 0 … 16/255.")
    params = attack_param_inputs(attack, key="robustness")
    c1, c2, c3, c4 = st.columns(4)
    samples = c1.number_input("test samples (0 = the whole test split)", min_value=0, value=0, step=100,
                              key="robustness-samples")
    seed = c2.number_input("seed (random starts)", min_value=0, value=0, key="robustness-seed")
    paired = [a for a, s in ATTACKS.items() if s.pairs_with == attack]
    with_adaptive = c3.checkbox(f"also {' and '.join(paired)}", value=bool(paired), disabled=not paired,
                                help="The adaptive attacks of attacks.md, with the same steps and step size, "
                                     "drawn paired with this one.")
    force = c4.checkbox("recompute even if cached", value=False)
    if st.button("▶ Run sweep"):
        try:
            ids = [manager.submit_sweep(chosen, attack, params, eps_text, samples or None, int(seed), force)]
            if with_adaptive:
                for other in paired:
                    shared = {k: v for k, v in params.items() if k in {p.name for p in ATTACKS[other].params}}
                    ids.append(manager.submit_sweep(chosen, other, shared, eps_text, samples or None, int(seed), force))
            st.session_state["robustness-jobs"] = ids
        except ConfigError as exc:
            st.error(str(exc))

# the newest suite and the newest sweep (with its paired adaptive sweeps) are followed side by side
job_ids = st.session_state.get("robustness-suite-jobs", []) + st.session_state.get("robustness-jobs", [])
active = any(manager.get(j).status not in FINISHED for j in job_ids)

# Filters hide lines, never change them: the bold line stays the worst case over every attack tried.
# Empty = everything, so a filter stays valid while a sweep adds attacks.
objectives = sorted({records[r]["objective"] for r in chosen})
c1, c2 = st.columns(2)
shown_objectives = c1.multiselect("show objectives (empty = all)", objectives, key="robustness-filter-objectives",
                                  format_func=str.upper, help="Runs are chosen in the picker above; this hides the "
                                  "lines of the objectives not picked here.")
shown_attacks = c2.multiselect("show single attacks (empty = all)", SWEEPABLE, key="robustness-filter-attacks",
                               help="Hides the other attacks' thin lines and charts. The bold line stays the worst "
                                    "case over every attack tried on the run, shown or not.")
shown_runs = {r for r in chosen if not shown_objectives or records[r]["objective"] in shown_objectives}


@st.fragment(run_every=CHART_REFRESH_S if active else None)
@store_errors()
def charts():
    jobs = [manager.get(j) for j in job_ids]
    for job in jobs:
        if job.status == "failed":
            st.error(f"{job.title}: {job.error}")
        elif job.status == "cancelled":
            st.warning(f"{job.title}: cancelled; the points it finished are kept.")
        elif job.status not in FINISHED:
            st.caption(f"{job.title}: {job.detail or job.status} — the curves fill in as points finish.")
    results = [r for run_id in chosen for r in store.list_results(run_id, "accuracy")]
    figures = filter_charts(robustness_charts(results, {r: records[r] for r in chosen}, store=store),
                            runs=shown_runs, attacks=set(shown_attacks) or None)
    if not figures:
        st.info("No cached results for these runs yet: run the robust suite above (or "
                "`python -m engine evaluate RUN_ID --suite robust`), or a single attack's sweep.")
    if active and len(figures) > LIVE_PLOT_BUDGET:  # the rest are drawn once, when the jobs have finished
        st.caption(f"While the jobs run, the first {LIVE_PLOT_BUDGET} of {len(figures)} charts are redrawn every "
                   f"{CHART_REFRESH_S:g} s; the others appear when they finish (the attack filter picks which).")
        figures = figures[:LIVE_PLOT_BUDGET]
    for i, chart in enumerate(figures):
        plotly_chart(robustness_figure(chart), f"robustness-{chart['attack']}-{chart['samples']}",
                     key=f"robustness-chart-{i}")
        if chart.get("groups"):
            st.caption("Runs that differ only by seed: the bold line is their mean, the band its 95 % CI (Student t) "
                       "over the seeds, at the ε every seed was evaluated at; each seed's own worst case is faint.")
        warning_summary(chart["warnings"])
    if active and all(job.status in FINISHED for job in jobs):
        st.rerun(scope="app")  # one last full redraw, after which the charts stop ticking


charts()

# --- tables -----------------------------------------------------------------------------------------
st.subheader("Tables")
st.caption("Minimal perturbations, SPSA grids and the transfer matrix, one job per press, cached per run and "
           "settings. Defaults are the papers' (C&W: 9 × 1000 iterations; SPSA: GCCS's grid): on a CPU start with "
           "few samples and iterations.")
measure = st.selectbox("measure", list(MEASURES), format_func=lambda m: f"{m} · {MEASURES[m]}")
settings: dict = {}
c1, c2 = st.columns(2)
table_samples = c1.number_input("test samples", min_value=1, value=100, step=50, key="measure-samples")
table_seed = c2.number_input("seed", min_value=0, value=0, key="measure-seed")
if measure in ("deepfool", "cw"):
    settings["params"] = attack_param_inputs(measure, key="measure")
elif measure == "spsa-grid":
    c1, c2, c3 = st.columns(3)
    settings["eps"] = c1.number_input("ε", min_value=0.0, max_value=1.0, value=0.02, format="%g", key="spsa-eps",
                                      help="GCCS Table 7: 0.02")
    iterations = c2.text_input("iterations (IT)", value="50, 100", help="GCCS Table 7: 50, 100")
    batch = c3.text_input("perturbation samples (BS)", value="512, 1024, 2048, 8192",
                          help="GCCS Table 7: 512, 1024, 2048, 8192; MMC: 128, 4096, 8192")
    try:
        settings["iterations"] = [int(v) for v in iterations.replace(" ", "").split(",") if v]
        settings["spsa_samples"] = [int(v) for v in batch.replace(" ", "").split(",") if v]
    except ValueError:
        st.error("spsa grid: iterations and perturbation samples must be comma-separated integers")
        st.stop()
else:
    c1, c2 = st.columns(2)
    settings["attack"] = c1.selectbox("attack crafted on each substitute", [a for a in SWEEPABLE
                                                                           if ATTACKS[a].budget == "linf"],
                                      index=0, format_func=lambda a: f"{a} · {ATTACKS[a].title}", key="transfer-attack")
    settings["eps"] = c2.number_input("ε", min_value=0.0, max_value=1.0, value=0.1, format="%g", key="transfer-eps")
    settings["params"] = {}
if st.button(f"▶ Compute {measure}"):
    try:
        st.session_state["measure-job"] = manager.submit_measure(chosen, measure, settings, int(table_samples),
                                                                 int(table_seed))
    except ConfigError as exc:
        st.error(str(exc))

measure_job_id = st.session_state.get("measure-job")
measure_active = measure_job_id is not None and manager.get(measure_job_id).status not in FINISHED


@st.fragment(run_every=CHART_REFRESH_S if measure_active else None)
@store_errors()
def tables():
    if measure_job_id is not None:
        job = manager.get(measure_job_id)
        if job.status == "failed":
            st.error(f"{job.title}: {job.error}")
        elif job.status not in FINISHED:
            st.caption(f"{job.title}: {job.detail or job.status}")
    shown = measure_tables(store, chosen, measure, {r: records[r] for r in chosen})
    if shown["rows"]:
        st.dataframe(shown["rows"], hide_index=True)
        table_downloads(shown["rows"], f"{measure}-table", key=f"measure-{measure}")
    for grid in shown["grids"]:
        st.markdown(f"**{grid['run']}** · SPSA accuracy · {grid['title']}")
        st.dataframe(grid["rows"], hide_index=True)
    for i, matrix in enumerate(shown["matrices"]):
        plotly_chart(transfer_heatmap(matrix["sources"], matrix["targets"], matrix["accuracy"], matrix["title"]),
                     f"transfer-{matrix['title']}", key=f"transfer-{i}")
        warning_summary(matrix["warnings"])
    if not (shown["rows"] or shown["grids"] or shown["matrices"]):
        st.caption(f"No cached {measure} results for these runs yet.")
    if measure_active and manager.get(measure_job_id).status in FINISHED:
        st.rerun(scope="app")


tables()
