"""The jobs of several seeds: their progress, then mean ± 95 % CI per objective (clean accuracy, the
cached worst case per ε, macro F1, r_AB) and paired verdicts.

One training job per seed; the page follows the first one live (ui.widgets.comparison_view) and this
lists the others, then, once every job has finished, the tables of engine.groups.seed_summary over
the runs they stored. It draws; engine.groups computes.
"""
from __future__ import annotations

import streamlit as st

from engine.groups import seed_summary
from engine.jobs import DONE, FINISHED
from ui.state import get_manager, get_store
from ui.widgets import live_fragment


def seed_jobs_view(job_ids: list[str], key: str, baseline: str = "ce") -> None:
    """Progress of every seed's job, and the summary over the seeds once all have finished."""
    if len(job_ids) < 2:
        return
    manager = get_manager()

    def body(_last):
        jobs = [manager.get(j) for j in job_ids]
        st.subheader(f"{len(jobs)} seeds")
        rows = [{"job": job.title, "status": job.status,
                 "epoch": f"{job.epoch}/{job.total_epochs}" if job.total_epochs else "",
                 "progress": round(job.progress, 3)} for job in jobs]
        st.dataframe(rows, hide_index=True, key=f"{key}-seed-jobs")
        if not all(job.status in FINISHED for job in jobs):
            st.caption("The summary over the seeds appears once every seed's job has finished.")
            return
        done = [job for job in jobs if job.status == DONE]
        if len(done) < len(jobs):
            st.warning(f"{len(jobs) - len(done)} of {len(jobs)} jobs did not finish; the summary covers the others.")
        store = get_store()
        run_ids = [run["run_id"] for job in done for run in job.runs]
        records = [store.get_run(r) for r in run_ids if store.has_run(r)]
        if not records:
            return
        summary = seed_summary(records, baseline=baseline, store=store)
        st.markdown("**Over the seeds: mean ± 95 % CI (Student t)**")
        st.caption("The worst case at each ε is the per-sample worst case over every ℓ∞ attack cached for each seed, "
                   "averaged only where every seed of the group has one on the same test samples; a seed without "
                   "one makes it *not evaluated* (the robust suite on the Robustness page evaluates it).")
        st.dataframe(summary["groups"], hide_index=True, key=f"{key}-seed-summary")
        if summary["comparisons"]:
            st.markdown(f"**Paired per seed against {baseline.upper()}**: the difference's 95 % CI entirely "
                        "above 0 is *higher*, entirely below *lower*, containing 0 *within noise*.")
            st.dataframe(summary["comparisons"], hide_index=True, key=f"{key}-seed-verdicts")

    # tick while some job is unfinished (when it finishes, the full rerun picks the next one)
    unfinished = [j for j in job_ids if manager.get(j).status not in FINISHED]
    live_fragment((unfinished or job_ids)[-1], body, key=f"{key}-seeds")
