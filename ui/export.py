"""Export of figures (PNG, HTML) and tables (CSV, JSON) from any page.

PNG: plotly.js renders it in the browser from the chart's modebar camera button; ``png_config`` sets
its format, file name and scale (2× for print). No server-side renderer (kaleido) is needed.
HTML: a standalone file with plotly.js embedded (``include_plotlyjs=True``, about 4.7 MB) rather than
loaded from a CDN, so the file opens offline and keeps working wherever it is archived; it is built
only when the button is clicked (a deferred download), so drawing a page costs nothing.
"""
from __future__ import annotations

import re
from typing import Any

import plotly.graph_objects as go
import streamlit as st

from engine.report import export_rows

PNG_SCALE = 2


def file_stem(name: str) -> str:
    """A file name from a title: letters, digits, dot, dash and underscore only."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "figure"


def png_config(name: str) -> dict[str, Any]:
    """The ``config`` for ``st.plotly_chart`` under which the modebar camera saves ``<name>.png``."""
    return {"toImageButtonOptions": {"format": "png", "filename": file_stem(name), "scale": PNG_SCALE},
            "displaylogo": False}


def figure_html(fig: go.Figure) -> str:
    """The figure as one self-contained, offline-capable HTML page."""
    return fig.to_html(include_plotlyjs=True, full_html=True)


def figure_downloads(fig: go.Figure, name: str, key: str) -> None:
    """A download button for the figure as HTML (PNG comes from the chart's own camera button when it
    is drawn with ``png_config``, as ``plotly_chart`` below does)."""
    st.download_button("HTML", data=lambda: figure_html(fig), file_name=f"{file_stem(name)}.html",
                       mime="text/html", key=f"{key}-html", on_click="ignore", icon=":material/download:",
                       help="Interactive figure, opens offline in any browser. For a PNG use the camera "
                            "icon above the chart.")


def plotly_chart(fig: go.Figure, name: str, key: str, **kwargs) -> None:
    """``st.plotly_chart`` with PNG export named after the figure, and an HTML download under it."""
    st.plotly_chart(fig, key=key, config=png_config(name), **kwargs)
    figure_downloads(fig, name, key)


def table_downloads(rows: list[dict[str, Any]], name: str, key: str) -> None:
    """Download buttons for the rows as CSV and as JSON, side by side."""
    stem = file_stem(name)
    left, right, _ = st.columns([1, 1, 6])
    left.download_button("CSV", data=export_rows(rows, "csv"), file_name=f"{stem}.csv", mime="text/csv",
                         key=f"{key}-csv", on_click="ignore", icon=":material/download:")
    right.download_button("JSON", data=export_rows(rows, "json"), file_name=f"{stem}.json",
                          mime="application/json", key=f"{key}-json", on_click="ignore", icon=":material/download:")
