"""Latent space page: per run, side by side, the simplex view and the 3-D view of three classes."""
import numpy as np
import streamlit as st

from ui.state import get_manager, get_store
from ui.widgets import class_picker, job_latent_entries, latent_panels, live_fragment, run_label

st.title("Latent space")
st.caption("Test points of three chosen classes (default 0, 1, 9 as in GCCS Fig. 3). Simplex view: projected onto "
           "the plane through the three class centres (GCCS vertices μ_T·e_i; class means for CE). 3-D view: the "
           "three latent coordinates (z_a, z_b, z_c). Axes keep true proportions; compare scales across panels.")

manager, store = get_manager(), get_store()
jobs = [j for j in manager.list() if j.kind == "train" and j.runs]
sources = ["stored runs"] + [j.id for j in jobs]
titles = {j.id: f"job: {j.title} ({j.status})" for j in jobs}
source = st.radio("show", sources, format_func=lambda s: titles.get(s, "stored runs (any epoch)"), horizontal=True)

if source != "stored runs":
    job = manager.get(source)
    classes = class_picker(max(len(job.class_names), 3), job.class_names, key="latent-job")
    if classes:
        live_fragment(source, lambda job: latent_panels(job_latent_entries(job), classes, job.class_names,
                                                        key="latent-job"), key="latent-job")
else:
    records = store.list_runs()
    if not records:
        st.info("The store is empty. Train something on the Start or Train page, or with `python -m engine train`.")
        st.stop()
    labels = {r["run_id"]: f"{run_label(r['objective'], r['run_id'])} · {r['dataset']} · {r['model']} · "
                           f"{r['settings']['epochs']} ep · seed {r['settings']['seed']} · acc {r['final']['test_acc']:.3f}"
              for r in records}
    by_id = {r["run_id"]: r for r in records}
    chosen = st.multiselect("runs", list(labels), default=list(labels)[:2], format_func=labels.get)
    if not chosen:
        st.stop()
    datasets = {by_id[r]["dataset"] for r in chosen}
    if len(datasets) > 1:
        st.warning("The chosen runs are on different datasets; the classes below follow the first one.")
    first = by_id[chosen[0]]
    classes = class_picker(first["num_classes"], first["class_names"], key="latent-store")
    latents = {r: store.get_latents(r) for r in chosen}
    epochs = sorted({e for r in chosen for e, _ in latents[r].get("snapshots", [])})
    epoch = st.select_slider("epoch", epochs, value=epochs[-1]) if len(epochs) > 1 else (epochs[-1] if epochs else None)
    if classes and epoch is not None:
        entries = []
        for r in chosen:
            snaps = dict(latents[r].get("snapshots", []))
            hist = {h["epoch"]: h for h in by_id[r]["history"]}
            if epoch not in snaps:
                st.caption(f"{labels[r]}: no snapshot at epoch {epoch}.")
                continue
            last = epoch == by_id[r]["history"][-1]["epoch"]  # extra views are stored for the last epoch
            entries.append({"label": run_label(by_id[r]["objective"], r), "z": np.asarray(snaps[epoch], np.float32),
                            "y": np.asarray(latents[r]["y"]), "geometry": by_id[r]["geometry"], "metrics": hist[epoch],
                            "views": latents[r].get("views", {}) if last else {}})
        latent_panels(entries, classes, first["class_names"], key="latent-store")
