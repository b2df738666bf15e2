"""Studies page: pick a built-in reproduction or write a study, run it (here or on a Ray cluster),
follow it run by run, and read its cells (mean ± 95 % CI), the paper's numbers, the verdicts and
the figure; export the tables (CSV, JSON, Markdown, LaTeX) and the figure (PNG, HTML)."""
import streamlit as st

from engine.data import DATASET_NAMES, DATASETS
from engine.groups import parse_seeds
from engine.jobs import FAILED, FINISHED
from engine.objectives import ConfigError
from engine.reproductions import REPRODUCTIONS
from engine.studies import claim_rows, load_study, metric_note, planned_runs, result_rows, stored_values, \
    study_from_dict, study_from_toml, study_results, to_latex, to_markdown
from ui.export import plotly_chart, table_downloads
from ui.figures import study_figure
from ui.state import open_store
from ui.widgets import dataset_notice, fmt_seconds, live_fragment

EXAMPLE = """name = "my-study"
title = "GCCS against CE at two batch sizes"
objectives = ["ce", "gccs"]
datasets = ["digits"]
seeds = [0, 1, 2]

[settings]
epochs = 20

[grid]
batch_size = [100, 200]

[[evaluate]]
suite = "pgd10"
samples = 200
"""

st.title("Studies")
st.caption("A study trains a grid of runs (objectives × seeds × settings × datasets), evaluates each, and "
           "reports every cell as mean ± 95 % CI over its seeds. Claims are paired comparisons seed by seed: "
           "**reproduced** when the interval of the difference lies on the paper's side of 0, **not reproduced** "
           "when it lies on the other side, **within noise** when it contains 0. Runs already stored are reused, "
           "evaluations already cached are read.")
store, manager = open_store()

source = st.radio("study", ["built-in reproduction", "my own (TOML)"], horizontal=True, key="studies-source")
study = None
try:
    if source == "built-in reproduction":
        name = st.selectbox("reproduction", list(REPRODUCTIONS), key="studies-name",
                            format_func=lambda n: f"{n} · {REPRODUCTIONS[n]['title']}")
        study = load_study(name)
    else:
        text = st.text_area("definition (TOML)", EXAMPLE, height=260, key="studies-toml",
                            help="Keys: name, title, objectives, datasets, seeds, preset, settings, grid (a setting "
                                 "or objective.constant → values), evaluate (suite = NAME or measure = NAME, samples, "
                                 "eps), baseline, claims, paper.")
        study = study_from_toml(text)
except ConfigError as exc:
    st.error(f"The study is not valid: {exc}")

if study is not None:
    with st.expander("what it trains and claims", expanded=False):
        if study.description:
            st.markdown(study.description)
        st.markdown(f"Objectives: {', '.join(o.name.upper() for o in study.objectives)}; grid: "
                    + (", ".join(f"{k} ∈ {{{', '.join(map(str, v))}}}" for k, v in study.grid.items()) or "none")
                    + "; evaluations: " + (", ".join(e.get("suite") or e.get("measure") for e in study.evaluate)
                                           or "the records' metrics only"))
        for claim in study.claims:
            st.markdown(f"- {claim.get('text') or claim['metric']} ({claim['metric']})")
        if study.notes:
            st.caption(study.notes)

    c1, c2, c3, c4 = st.columns(4)  # keyed by the study: picking another one shows its own defaults
    dataset = c1.selectbox("dataset", DATASET_NAMES, index=DATASET_NAMES.index(study.datasets[0]), key=f"studies-dataset-{study.name}",
                           format_func=lambda d: f"{d} · {DATASETS[d].label}")
    seeds_text = c2.text_input("seeds", ",".join(map(str, study.seeds)), key=f"studies-seeds-{study.name}",
                               help="Comma-separated, at least 2 for a verdict (3 or more for a claim worth printing).")
    epochs = c3.number_input("epochs (0: the preset's)", min_value=0, max_value=100_000, value=0, step=1,
                             key="studies-epochs", help="Every run's epochs; 0 keeps the dataset preset's own "
                                                        "(digits: 100, Fashion-MNIST: 5).")
    executor = c4.selectbox("executor", ["local", "ray"], key="studies-executor",
                            help="local: the app's worker; ray: one Ray task per run on a cluster (its address "
                                 "below) or on a local one started for the study.")
    address = st.text_input("Ray cluster address (empty: start a local one)", key="studies-address") \
        if executor == "ray" else None
    ready = dataset_notice(dataset, st)
    try:
        changes = {"datasets": [dataset], "seeds": parse_seeds(seeds_text, "seeds")}
        if epochs:
            changes["settings"] = {**study.settings, "epochs": int(epochs)}
        study = study.with_(**changes)
        st.caption(f"{len(planned_runs(study))} runs: {len(study.seeds)} seeds of each cell.")
    except ConfigError as exc:
        st.error(f"Not started: {exc}")
        study, ready = None, False

if study is not None:
    if st.button("▶ Run study", type="primary", disabled=not ready, key="studies-run"):
        try:
            st.session_state["studies-job"] = manager.submit_study(study, executor, address)
            st.session_state["studies-shown"] = study.name
        except ConfigError as exc:
            st.error(f"Not started: {exc}")


def show_results(results: dict, key: str) -> None:
    """The cells, the claims and the figure of a study's results, with their downloads."""
    if results["missing"]:
        st.caption(f"{len(results['missing'])} of {results['runs']} runs have no values yet: their cells count the "
                   "seeds that have.")
    for failure in results.get("failed", []):
        st.warning(f"{failure['cell']} seed {failure['seed']} failed twice: {failure['error']}")
    for dataset in results["datasets"]:
        st.markdown(f"**{results['title'] or results['study']} · {dataset}**"
                    + (f" · {fmt_seconds(results['seconds'])} to compute" if results.get("seconds") else ""))
        found = list(dict.fromkeys(m for c in results["cells"] for m in c["metrics"]))
        claimed = {"clean_accuracy"} | {c[k] for c in results["claims"] for k in ("metric", "metric_b")} | {
            m for c in results["cells"] for m in c["paper"]}
        shown = st.multiselect("columns", found, default=[m for m in found if m in claimed], key=f"{key}-cols-{dataset}",
                               help="The metrics of the cells' table; by default clean accuracy and those the claims "
                                    "and the paper's numbers concern.")
        rows = [r for r in result_rows(results, shown or None) if r["dataset"] == dataset]
        st.dataframe(rows, hide_index=True, key=f"{key}-cells-{dataset}")
        claims = [r for r in claim_rows(results) if r["dataset"] == dataset]
        if claims:  # a few rows, as a plain table: every word of the claims and verdicts in view
            st.table(claims)
        metrics = [m for m in dict.fromkeys(m for c in results["cells"] for m in c["metrics"])]
        if metrics:
            left, right = st.columns([3, 1])
            metric = left.selectbox("figure: metric", metrics, key=f"{key}-metric-{dataset}",
                                    format_func=lambda m: f"{m} · {metric_note(m)}" if metric_note(m) else m)
            baseline = results["baseline"]
            gain = right.toggle(f"gain over {baseline.upper()}" if baseline else "gain (the study has no baseline)",
                                key=f"{key}-gain-{dataset}", disabled=baseline is None)
            fig = study_figure(results, metric, dataset, gain=gain and baseline is not None)
            plotly_chart(fig, f"{results['study']}-{dataset}-{metric}", key=f"{key}-figure-{dataset}")
        all_rows = rows + claims
        table_downloads(all_rows, f"{results['study']}-{dataset}", key=f"{key}-export-{dataset}")
        left, right, _ = st.columns([1, 1, 6])
        left.download_button("Markdown", data=to_markdown(rows) + ("\n" + to_markdown(claims) if claims else ""),
                             file_name=f"{results['study']}-{dataset}.md", mime="text/markdown",
                             key=f"{key}-md-{dataset}", on_click="ignore", icon=":material/download:")
        right.download_button("LaTeX", data=to_latex(rows, results["title"]) + (to_latex(claims) if claims else ""),
                              file_name=f"{results['study']}-{dataset}.tex", mime="text/x-tex",
                              key=f"{key}-tex-{dataset}", on_click="ignore", icon=":material/download:")


job_id = st.session_state.get("studies-job")
if job_id:
    st.subheader("Progress")

    def progress_view(job) -> None:
        if job.status == FAILED:
            st.error(f"The study failed: {job.error}")
        elif job.status not in FINISHED:
            st.progress(min(job.progress, 1.0), text=f"{job.detail or 'starting'} · ETA {fmt_seconds(job.eta)}")
        finished = [p for p in job.points if p["status"] in ("done", "reused", "failed")]
        if finished:
            st.dataframe([{"cell": p["cell"], "seed": p["seed"], "run": p["run_id"], "status": p["status"],
                           "error": p.get("error") or ""} for p in finished[::-1]], hide_index=True,
                         height=min(36 * (len(finished) + 1), 300), key="studies-progress-table")
        if job.status in FINISHED and job.result is not None:
            failed = len(job.result["failed"])
            st.success(f"Study {job.result['study']} finished: {job.result['runs'] - failed} runs"
                       + (f", {failed} failed" if failed else "") + ". Its results are under Stored studies below.")

    live_fragment(job_id, progress_view, key="studies-live")

stored = store.list_studies()
if stored.problems:
    st.warning(f"{len(stored.problems)} stored stud{'ies' if len(stored.problems) > 1 else 'y'} could not be read: "
               + "; ".join(stored.problems[:3]))
st.subheader("Stored studies")
if not stored:
    st.caption("None yet: run one above or with `python -m engine study run NAME`.")
else:
    st.dataframe([{"study": s["name"], "title": s["definition"].get("title", ""), "runs": len(s.get("values", {})),
                   "datasets": ", ".join(s["definition"].get("datasets", []))} for s in stored],
                 hide_index=True, key="studies-stored")
    chosen = st.selectbox("show", [s["name"] for s in stored], key="studies-show",
                          index=next((i for i, s in enumerate(stored) if s["name"] == st.session_state.get(
                              "studies-shown")), 0))
    row = next(s for s in stored if s["name"] == chosen)
    try:
        shown = study_from_dict(row["definition"])
        show_results(study_results(shown, stored_values(store, shown), seconds=row.get("seconds")), key="studies-stored")
    except ConfigError as exc:
        st.error(f"Study {chosen} was stored by another version and cannot be shown: {exc}")
