"""Process-wide singletons shared by every rerun and browser tab (Streamlit's st.cache_resource)."""
from __future__ import annotations

import streamlit as st

from cache import RunStore
from engine.jobs import JobManager


@st.cache_resource
def get_store() -> RunStore:
    """The run store at $SIMPLEX_STORE (default ~/.cache/simplex-workbench/store)."""
    return RunStore()


@st.cache_resource
def get_manager() -> JobManager:
    """One job manager for the whole server: jobs survive reruns and are seen from every tab."""
    return JobManager(store=get_store())
