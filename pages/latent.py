"""Latent space page: per run, side by side, the simplex view and the 3-D view of three classes; for
stored runs also the same points under attack at any ε of a grid (visuals.md, "Perturbation")."""
import time

import numpy as np
import streamlit as st

from engine.attacks import ATTACKS, attack_params, budget_of
from engine.jobs import FINISHED
from engine.latent import TRAJECTORY_POINTS, cached_shift, cached_shift_grid, shift_view
from engine.objectives import ConfigError
from engine.report import NOT_EVALUATED, worst_case_at, worst_case_of, worst_case_source
from ui.figures import distance_histogram, shift_animation_runs, shift_figure
from ui.state import open_store, store_errors
from ui.widgets import (CHART_REFRESH_S, attack_param_inputs, class_picker, hover_samples, job_latent_entries,
                        latent_panels, live_fragment, panel_columns, run_label, stored_run_label, stored_run_picker)

st.title("Latent space")
st.caption("Test points of three chosen classes (default 0, 1, 9 as in GCCS Fig. 3). Simplex view: projected onto "
           "the plane through the three class centres (GCCS vertices μ_T·e_i; class means for CE). 3-D view: the "
           "three latent coordinates (z_a, z_b, z_c). Axes keep true proportions; compare scales across panels.")

store, manager = open_store()
jobs = [j for j in manager.list() if j.kind == "train" and j.runs and not j.released]
sources = ["stored runs"] + [j.id for j in jobs]
# Labels that stay the same while a job runs, and a key: an option whose label changes (a status in it)
# makes a new widget, and the page would jump back to the stored runs when the job ends.
titles = {j.id: f"job: {j.title} · {time.strftime('%H:%M:%S', time.localtime(j.created))}" for j in jobs}
source = st.radio("show", sources, format_func=lambda s: titles.get(s, "stored runs (any epoch)"), horizontal=True,
                  key="latent-source")

if source != "stored runs":
    job = manager.get(source)
    classes = class_picker(max(len(job.class_names), 3), job.class_names, key="latent-job")
    if classes:
        live_fragment(source, lambda job: latent_panels(
            job_latent_entries(job), classes, job.class_names, key="latent-job", live=job.status not in FINISHED),
            key="latent-job")
else:
    chosen, by_id = stored_run_picker(store, key="latent-store")
    if not chosen:
        st.stop()
    labels = {r: stored_run_label(by_id[r]) for r in chosen}
    first = by_id[chosen[0]]
    classes = class_picker(first["num_classes"], first["class_names"], key="latent-store")
    with store_errors(stop=True):
        latents = {r: store.get_latents(r) for r in chosen}
        history = {r: store.get_run(r)["history"] for r in chosen}  # listings hold no per-epoch history
    epochs = sorted({e for r in chosen for e, _ in latents[r].get("snapshots", [])})
    epoch = st.select_slider("epoch", epochs, value=epochs[-1]) if len(epochs) > 1 else (epochs[-1] if epochs else None)
    if classes and epoch is not None:
        entries = []
        for r in chosen:
            snaps = dict(latents[r].get("snapshots", []))
            hist = {h["epoch"]: h for h in history[r]}
            if epoch not in snaps:
                st.caption(f"{labels[r]}: no snapshot at epoch {epoch}.")
                continue
            last = epoch == history[r][-1]["epoch"]  # extra views are stored for the last epoch
            entries.append({"label": run_label(by_id[r]["objective"], r), "z": np.asarray(snaps[epoch], np.float32),
                            "y": np.asarray(latents[r]["y"]), "geometry": by_id[r]["geometry"], "metrics": hist[epoch],
                            "views": latents[r].get("views", {}) if last else {},
                            # the images are the same at every epoch; the predictions are the final checkpoint's
                            "samples": hover_samples(store, r),
                            "prediction_note": None if last else f"final model, epoch {history[r][-1]['epoch']}"})
        latent_panels(entries, classes, first["class_names"], key="latent-store")

    if not classes:
        st.stop()

    # --- under attack -------------------------------------------------------------------------------------
    st.subheader("Under attack")
    st.caption("The same test points after an attack, in the plane through the three clean centres (fixed across "
               "ε, so the points move and the axes stay): clean points faint, attacked points bold, arrows from each "
               "clean point to its attacked position, and per-sample trajectories over the attack's iterations "
               "(MMC Fig. 3(b)). Latents under attack are computed in a background job and cached per (run, attack, "
               "ε); moving the slider only redraws.")
    sweepable = [a for a, s in ATTACKS.items() if s.budget != "none"]
    c1, c2, c3 = st.columns([2, 2, 1])
    attack = c1.selectbox("attack", sweepable, index=sweepable.index("pgd"),
                          format_func=lambda a: f"{a} · {ATTACKS[a].title}", key="shift-attack")
    eps_text = c2.text_input("ε grid", value=", ".join(f"{e:g}" for e in budget_of(attack).grid if e > 0),
                             key=f"shift-eps-{attack}", help=budget_of(attack).label + "; ε = 0 (clean) is always added.")
    samples = int(c3.number_input("points", min_value=10, max_value=100_000,
                                  value=min(int(first["settings"]["latent_samples"]), 1000), step=100,
                                  help="The run's fixed test subset (the points above), cut to this size."))
    raw = attack_param_inputs(attack, key="shift", exclude=("restarts",))  # one run of the attack is shown
    try:
        params = attack_params(attack, raw)
    except ConfigError as exc:
        st.error(str(exc))
        st.stop()
    if st.button("Compute latents under attack", type="primary"):
        try:
            st.session_state["shift-job"] = manager.submit_shift(chosen, attack, params, eps_text, samples)
        except ConfigError as exc:
            st.error(str(exc))

    shift_job_id = st.session_state.get("shift-job")
    shift_active = shift_job_id is not None and manager.get(shift_job_id).status not in FINISHED
    c1, c2, c3, c4 = st.columns(4)
    arrows = c1.checkbox("arrows clean → attacked", value=True)
    trajectories = c2.checkbox("trajectories over iterations", value=False,
                               help=f"The first {TRAJECTORY_POINTS} points of the subset at every forward pass of the "
                                    "attack (for PGD: the random start and each iterate).")
    animate = c3.checkbox("animation over the ε grid", value=False,
                          help="One figure for every run, with one play button and slider: all panels move together")
    distance = c4.radio("histogram of", ["centre", "norm"], horizontal=True,
                        format_func={"centre": "distance to own centre", "norm": "‖z‖"}.get)

    @st.fragment(run_every=CHART_REFRESH_S if shift_active else None)
    @store_errors()
    def under_attack():
        if shift_job_id is not None:
            job = manager.get(shift_job_id)
            if job.status == "failed":
                st.error(job.error)
            elif job.status not in FINISHED:
                st.caption(f"{job.title}: {job.detail or job.status}; the views appear as ε values finish.")
        grids = {r: cached_shift_grid(store, r, attack, params, samples) for r in chosen}
        # one attack's accuracy is an upper bound on the ℓ∞ worst case, which is shown beside it when cached
        linf = ATTACKS[attack].budget == "linf"
        alone = f"{attack} alone: an upper bound" if ATTACKS[attack].budget in ("linf", "l2") else attack
        heads = {r: worst_case_of(store, r) for r in chosen} if linf else {}
        common = sorted(set.intersection(*(set(g) for g in grids.values()))) if grids else []
        if 0.0 not in common or len(common) < 2:
            st.info("Nothing cached yet for this attack, these parameters and this many points: press Compute.")
        else:
            # the slider follows the newest ε as a job adds them, unless the viewer has moved it away
            state = st.session_state
            if state.get("shift-eps-slider") in (None, state.get("shift-eps-newest")) or \
                    state.get("shift-eps-slider") not in common[1:]:
                state["shift-eps-slider"] = common[-1]
            state["shift-eps-newest"] = common[-1]
            eps = st.select_slider("ε", common[1:], key="shift-eps-slider")
            if animate:  # one figure, one play button and slider for every run; its titles follow the frame
                runs = [(run_label(by_id[r]["objective"], r),
                         [shift_view(cached_shift(store, r, attack, params, 0.0, samples),
                                     cached_shift(store, r, attack, params, e, samples),
                                     cached_shift(store, r, attack, params, 0.0, samples)["y"], classes,
                                     by_id[r]["geometry"], distance) for e in common]) for r in chosen]
                st.plotly_chart(shift_animation_runs(runs, classes, first["class_names"], arrows, trajectories,
                                                     alone=alone), key="shift-anim")
                st.caption("The panels' titles follow the animation's frame; the numbers below are at the slider's ε.")
            cols = panel_columns(len(chosen))
            for col, r in zip(cols, chosen):
                record = by_id[r]
                clean = cached_shift(store, r, attack, params, 0.0, samples)
                label = run_label(record["objective"], r)
                with col:
                    attacked = cached_shift(store, r, attack, params, eps, samples)
                    view = shift_view(clean, attacked, clean["y"], classes, record["geometry"], distance)
                    if not animate:
                        st.plotly_chart(shift_figure(view, classes, first["class_names"], arrows, trajectories,
                                                     title=f"{label} · ε = {eps:g}"), key=f"shift-{r}")
                    m1, m2, m3 = st.columns(3)
                    m1.metric(f"accuracy at ε = {eps:g} ({alone})", f"{view['accuracy']:.3f}",
                              help=f"on these {samples} points (all classes)")
                    m2.metric("left their decision region", f"{view['left_region']:.1%}",
                              help="points whose predicted class changed under the attack (all classes)")
                    worst = worst_case_at(heads.get(r), eps)
                    if worst is not None:
                        m3.metric(f"worst case at ε = {eps:g}", f"{worst:.3f}", help=worst_case_source(heads[r]))
                    elif linf:
                        st.caption(f"Worst case at ε = {eps:g}: {NOT_EVALUATED}.")
                    st.plotly_chart(distance_histogram(view, label, distance), key=f"shift-hist-{r}")
        if shift_active and manager.get(shift_job_id).status in FINISHED:
            st.rerun(scope="app")

    under_attack()
