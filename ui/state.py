"""Process-wide singletons shared by every rerun and browser tab (Streamlit's st.cache_resource)."""
from __future__ import annotations

import contextlib

import streamlit as st

from cache import RunStore, StoreError
from engine.jobs import JobManager


@st.cache_resource
def get_store() -> RunStore:
    """The run store at $SIMPLEX_STORE (default ~/.cache/simplex-workbench/store)."""
    return RunStore()


@st.cache_resource
def get_manager() -> JobManager:
    """One job manager for the whole server: jobs survive reruns and are seen from every tab."""
    return JobManager(store=get_store())


@contextlib.contextmanager
def store_errors(stop: bool = False):
    """A store that cannot be read (damaged, of an older format, on a full disk) as one clear message
    on the page instead of a traceback; the message says what is wrong and which command mends it.
    ``stop``: nothing after the block can be shown without what it failed to read."""
    try:
        yield
    except StoreError as exc:
        st.error(f"The store: {exc}", icon=":material/error:")
        if stop:
            st.stop()


def open_store() -> tuple[RunStore, JobManager]:
    """The store and the job manager for a page, or the store's fault as a message and nothing more
    of the page (an unreadable index, a store of the older format)."""
    with store_errors(stop=True):
        return get_store(), get_manager()
