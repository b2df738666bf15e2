"""Simplex Workbench: the Streamlit entry point (``streamlit run app.py``).

The entry point is the frame around every page: page navigation and the job panel in the sidebar.
The pages live in pages/, one file each; the start page holds the one-click CE-vs-GCCS comparison.
"""
import streamlit as st

from ui.state import store_errors
from ui.widgets import job_panel

st.set_page_config(page_title="Simplex Workbench", page_icon=":material/change_history:", layout="wide")

PAGES = [
    st.Page("pages/start.py", title="Start", icon=":material/change_history:", default=True),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("pages/latent.py", title="Latent space", icon=":material/scatter_plot:"),
    st.Page("pages/robustness.py", title="Robustness", icon=":material/shield:"),
    st.Page("pages/examples.py", title="Examples", icon=":material/photo_library:"),
    st.Page("pages/runs.py", title="Runs", icon=":material/table_view:"),
    st.Page("pages/studies.py", title="Studies", icon=":material/science:"),
]
page = st.navigation(PAGES)
with store_errors():
    with st.sidebar:
        job_panel()
    page.run()
