"""Start page: what the workbench is, and the one-click CE-vs-GCCS comparison on digits or Fashion-MNIST."""
import streamlit as st

from engine.config import PRESET_NOTES, PRESETS, preset
from engine.data import DATASETS
from engine.groups import parse_seeds
from engine.jobs import FINISHED
from engine.objectives import ConfigError
from ui.seeds import seed_jobs_view
from ui.state import get_manager
from ui.widgets import (class_picker, comparison_view, dataset_notice, job_latent_entries, latent_panels, live_fragment,
                        worst_case_view)

st.title("Simplex Workbench")
st.markdown(
    "Study loss functions that make image classifiers robust to adversarial attacks. Train objectives "
    "side by side on identical batches, watch each class's latent distribution settle on its simplex "
    "vertex, and compare the curves live. **GCCS** (Ali et al., 2023) pulls the per-class batch statistics "
    "of the latent vector z ∈ ℝᴷ to Gaussians N(μ_T·e_i, σ_T²·I) centred on the vertices of a simplex; "
    "**CE** is plain softmax cross-entropy.")

st.subheader("One click: CE vs GCCS")
DATA = {"quick": "digits (embedded, 8×8, 1,347 training images)",
        "fmnist-quick": "Fashion-MNIST (28×28, 60,000 training images)"}
name = st.radio("data", list(DATA), format_func=DATA.get, horizontal=True, key="start-preset")
recipe = PRESETS[name]
st.caption(PRESET_NOTES[name] + ". Model: the LeNet-5-style CNN. Both objectives see identical batches. "
           "Runs with identical settings are taken from the store instead of being retrained.")
ready = dataset_notice(recipe["dataset"], say_ready=False)
c1, c2, c3, c4 = st.columns([1, 1, 1, 2])
epochs = c1.number_input("epochs", min_value=1, max_value=2000, value=recipe["epochs"], key=f"start-epochs-{name}",
                         help=f"The preset trains {recipe['epochs']} epochs; its time is stated above.")
seeds_text = c2.text_input("seeds", value="0,1,2" if name == "quick" else "0", key=f"start-seeds-{name}",
                           help="One job per seed, one after the other. With ≥ 2 seeds the page adds mean ± 95 % CI "
                                "per objective and a paired per-seed verdict GCCS vs CE (≥ 3 seeds for a comparison).")
force = c3.checkbox("retrain even if stored", value=False)
if c4.button(f"▶ Train CE vs GCCS on {recipe['dataset']}", type="primary", disabled=not ready):
    try:
        seeds = parse_seeds(seeds_text, "seeds")
    except ConfigError as exc:
        st.error(f"Not started: {exc}")
    else:
        title = f"CE vs GCCS · {recipe['dataset']} · cnn · {int(epochs)} ep"
        job_ids = [get_manager().submit_training(preset(name, ("ce", "gccs"), epochs=int(epochs), seed=seed),
                                                 force=force, title=title + (f" · seed {seed}" if len(seeds) > 1 else ""))
                   for seed in seeds]
        st.session_state["start_job"], st.session_state["start_jobs"] = job_ids[0], job_ids

job_id = st.session_state.get("start_job")
if job_id is None:
    st.info("Press the button to train both objectives in a background job; the charts below fill in as it runs. "
            "The Train page offers every setting; the Latent space page shows any stored run.")
else:
    comparison_view(job_id, key="start")  # the first seed, live
    seed_jobs_view(st.session_state.get("start_jobs", [job_id]), key="start")
    worst_case_view(st.session_state.get("start_jobs", [job_id]), key="start")
    st.subheader("Latent simplex geometry (test points of three classes)")
    st.caption("Left: projected onto the plane through the three class centres (GCCS: the vertices μ_T·e_i; "
               "CE: the class means). Right: the three latent coordinates. Compare the axis scales across panels.")
    job = get_manager().get(job_id)  # its class names are known before it starts: the data set's
    names = job.class_names or list(DATASETS[job.settings["config"]["dataset"]].class_names)
    classes = class_picker(len(names), names, key="start")
    if classes:
        live_fragment(job_id, lambda job: latent_panels(
            job_latent_entries(job), classes, job.class_names, key="start-latent", live=job.status not in FINISHED),
            key="start-latent")
