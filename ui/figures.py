"""Plotly figures of the workbench. Pure functions of published numbers: no Streamlit, no torch.

Every figure puts the runs of a comparison side by side on shared axes (or shared scales) so that
objectives can be compared at a glance, and carries enough labelling to go into a paper as is.
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from engine.latent import coords_3d, simplex_view

# One colour per objective, stable across pages; classes get their own qualitative palette.
OBJECTIVE_COLOURS = {"ce": "#636efa", "gccs": "#ef553b", "mmc": "#00cc96", "isce": "#ab63fa",
                     "mat": "#ffa15a", "pcl": "#19d3f3", "center": "#ff6692"}
CLASS_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf"]
X_AXES = {"epoch": "epoch", "time": "wall-clock time (s)"}


def colour_of(objective: str, index: int = 0) -> str:
    return OBJECTIVE_COLOURS.get(objective, CLASS_COLOURS[index % len(CLASS_COLOURS)])


def _x(history: list[dict], x_axis: str) -> list[float]:
    return [h["epoch"] if x_axis == "epoch" else h["time"] for h in history]


def accuracy_figure(runs: list[dict], x_axis: str = "epoch") -> go.Figure:
    """Test (solid) and running train (dotted) accuracy of every run on one shared axis.

    ``runs``: dicts with ``label``, ``objective`` and ``history`` (the per-epoch metrics)."""
    fig = go.Figure()
    for i, run in enumerate(runs):
        colour, hist = colour_of(run["objective"], i), run["history"]
        fig.add_trace(go.Scatter(x=_x(hist, x_axis), y=[h["test_acc"] for h in hist], mode="lines+markers",
                                 marker_size=4, name=f"{run['label']} · test", line=dict(color=colour)))
        fig.add_trace(go.Scatter(x=_x(hist, x_axis), y=[h["train_acc"] for h in hist], mode="lines",
                                 name=f"{run['label']} · train", line=dict(color=colour, dash="dot")))
    fig.update_layout(title="Accuracy (test: solid; train, running mean in train mode: dotted)",
                      xaxis_title=X_AXES[x_axis], yaxis_title="accuracy", yaxis_range=[0, 1.02],
                      height=360, margin=dict(l=10, r=10, t=50, b=10), legend=dict(font_size=11))
    return fig


def loss_figure(runs: list[dict], x_axis: str = "epoch", log_y: bool = True) -> go.Figure:
    """The loss and its named parts, one panel per run (objectives have different scales), shared x."""
    fig = make_subplots(rows=1, cols=max(len(runs), 1), shared_xaxes=True,
                        subplot_titles=[r["label"] for r in runs] or ["no runs yet"])
    for i, run in enumerate(runs):
        hist = run["history"]
        parts = list(hist[0]["loss"]) if hist else []
        # A panel with a value ≤ 0 (e.g. GCCS's literal kurtosis term) stays linear: a log axis would
        # silently drop those points.
        panel_log = log_y and all(h["loss"][p] > 0 for h in hist for p in parts)
        for j, part in enumerate(parts):
            fig.add_trace(go.Scatter(x=_x(hist, x_axis), y=[h["loss"][part] for h in hist], mode="lines",
                                     name=f"{run['label']} · {part}",
                                     line=dict(color=colour_of(run["objective"], i),
                                               dash=["solid", "dash", "dot", "dashdot"][j % 4])),
                          row=1, col=i + 1)
        fig.update_xaxes(title_text=X_AXES[x_axis], row=1, col=i + 1)
        fig.update_yaxes(type="log" if panel_log else "linear", row=1, col=i + 1,
                         title_text=None if panel_log == log_y else "linear: values ≤ 0")
    fig.update_layout(title="Training loss and its parts (per-epoch mean; GCCS summed over classes as in the paper)",
                      height=340, margin=dict(l=10, r=10, t=70, b=10), legend=dict(font_size=11))
    return fig


def diagnostic_names(runs: list[dict]) -> list[str]:
    """Every diagnostic some run of the comparison publishes (e.g. mean ‖z‖, distance to own centre)."""
    return sorted({k for run in runs for h in run["history"][-1:] for k in h.get("diagnostics", {})})


def diagnostics_figure(runs: list[dict], name: str, x_axis: str = "epoch") -> go.Figure:
    """One per-epoch diagnostic of every run that has it, on shared axes (MAT and I-SCE can inflate
    ‖z‖, which masks gradients; GCCS and MMC pull z to fixed centres)."""
    fig = go.Figure()
    for i, run in enumerate(runs):
        hist = [h for h in run["history"] if name in h.get("diagnostics", {})]
        if hist:
            fig.add_trace(go.Scatter(x=_x(hist, x_axis), y=[h["diagnostics"][name] for h in hist], mode="lines",
                                     name=run["label"], line=dict(color=colour_of(run["objective"], i))))
    fig.update_layout(title=f"Diagnostic: {name} (test split, per epoch)", xaxis_title=X_AXES[x_axis],
                      yaxis_title=name, height=300, margin=dict(l=10, r=10, t=50, b=10))
    return fig


def _class_name(c: int, names: list[str] | None) -> str:
    return names[c] if names and c < len(names) else str(c)


def simplex_figure(z: np.ndarray, y: np.ndarray, classes: list[int], geometry: np.ndarray | None,
                   title: str, class_names: list[str] | None = None) -> go.Figure:
    """Points of three classes projected onto the plane through their three centres, with the
    centres drawn as a triangle (GCCS: vertices μ_T·e_i; CE: the class means)."""
    points, labels, vertices = simplex_view(z, y, classes, geometry)
    fig = go.Figure()
    tri = np.vstack([vertices, vertices[:1]])
    fig.add_trace(go.Scatter(x=tri[:, 0], y=tri[:, 1], mode="lines", line=dict(color="#444", width=1),
                             name="centres" if geometry is not None else "class means", hoverinfo="skip"))
    for k, c in enumerate(classes):
        mask = labels == c
        fig.add_trace(go.Scatter(x=points[mask, 0], y=points[mask, 1], mode="markers",
                                 marker=dict(size=5, color=CLASS_COLOURS[k % 10], opacity=0.7),
                                 name=f"class {_class_name(c, class_names)}"))
        fig.add_trace(go.Scatter(x=[vertices[k, 0]], y=[vertices[k, 1]], mode="markers",
                                 marker=dict(size=14, symbol="x", color=CLASS_COLOURS[k % 10],
                                             line=dict(width=2, color="#000")),
                                 showlegend=False, hovertemplate=f"centre of class {c}<extra></extra>"))
    fig.update_layout(title=title, height=360, margin=dict(l=10, r=10, t=40, b=10),
                      xaxis_title="plane axis 1", yaxis_title="plane axis 2", legend=dict(font_size=10))
    fig.update_yaxes(scaleanchor="x", scaleratio=1)  # true proportions: compare scales across panels
    return fig


def latent_3d_figure(z: np.ndarray, y: np.ndarray, classes: list[int], geometry: np.ndarray | None,
                     title: str, class_names: list[str] | None = None) -> go.Figure:
    """The three latent coordinates (z_a, z_b, z_c) of the three classes with their centres, or for
    latents of another dimension the 3-D subspace spanned by the three centres."""
    points, labels, centres, names = coords_3d(z, y, classes, geometry)
    fig = go.Figure()
    for k, c in enumerate(classes):
        mask = labels == c
        fig.add_trace(go.Scatter3d(x=points[mask, 0], y=points[mask, 1], z=points[mask, 2], mode="markers",
                                   marker=dict(size=2.5, color=CLASS_COLOURS[k % 10], opacity=0.7),
                                   name=f"class {_class_name(c, class_names)}"))
    tri = np.vstack([centres, centres[:1]])
    fig.add_trace(go.Scatter3d(x=tri[:, 0], y=tri[:, 1], z=tri[:, 2], mode="lines+markers",
                               line=dict(color="#444", width=3), marker=dict(size=5, color="#000", symbol="x"),
                               name="centres" if geometry is not None else "class means"))
    fig.update_layout(title=title, height=380, margin=dict(l=0, r=0, t=40, b=0), legend=dict(font_size=10),
                      scene=dict(xaxis_title=names[0], yaxis_title=names[1], zaxis_title=names[2],
                                 aspectmode="cube"))
    return fig
