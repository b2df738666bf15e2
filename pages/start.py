"""Start page: what the workbench is, and the one-click CE-vs-GCCS comparison on digits."""
import streamlit as st

from engine.config import PRESET_NOTES, PRESETS, preset
from ui.state import get_manager
from ui.widgets import class_picker, comparison_view, job_latent_entries, latent_panels, live_fragment

st.title("Simplex Workbench")
st.markdown(
    "Study loss functions that make image classifiers robust to adversarial attacks. Train objectives "
    "side by side on identical batches, watch each class's latent distribution settle on its simplex "
    "vertex, and compare the curves live. **GCCS** (Ali et al., 2023) pulls the per-class batch statistics "
    "of the latent vector z ∈ ℝᴷ to Gaussians N(μ_T·e_i, σ_T²·I) centred on the vertices of a simplex; "
    "**CE** is plain softmax cross-entropy.")

st.subheader("One click: CE vs GCCS on the embedded digits data")
st.caption(PRESET_NOTES["quick"] + ". Model: the LeNet-5-style CNN. Both objectives see identical batches. "
           "Runs with identical settings are taken from the store instead of being retrained.")
c1, c2, c3 = st.columns([1, 1, 2])
epochs = c1.number_input("epochs", min_value=1, max_value=2000, value=PRESETS["quick"]["epochs"], step=10,
                         help="The quick preset trains 100 epochs (about 10 s on two CPU cores).")
force = c2.checkbox("retrain even if stored", value=False)
if c3.button("▶ Train CE vs GCCS on digits", type="primary"):
    job_id = get_manager().submit_training(preset("quick", ("ce", "gccs"), epochs=int(epochs)), force=force,
                                           title=f"CE vs GCCS · digits · cnn · {int(epochs)} ep")
    st.session_state["start_job"] = job_id

job_id = st.session_state.get("start_job")
if job_id is None:
    st.info("Press the button to train both objectives in a background job; the charts below fill in as it runs. "
            "The Train page offers every setting; the Latent space page shows any stored run.")
else:
    comparison_view(job_id, key="start")
    st.subheader("Latent simplex geometry (test points of three classes)")
    st.caption("Left: projected onto the plane through the three class centres (GCCS: the vertices μ_T·e_i; "
               "CE: the class means). Right: the three latent coordinates. Compare the axis scales across panels.")
    classes = class_picker(10, [str(i) for i in range(10)], key="start")
    if classes:
        live_fragment(job_id, lambda job: latent_panels(job_latent_entries(job), classes, job.class_names,
                                                        key="start-latent"), key="start-latent")
