"""Plotly figures of the workbench, and Altair ones where a hover must show an image. Pure functions of
published numbers: no Streamlit, no torch.

Every figure puts the runs of a comparison side by side on shared axes (or shared scales) so that
objectives can be compared at a glance, and carries enough labelling to go into a paper as is.
"""
from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from engine.latent import coords_3d, region_boundaries, simplex_view

# One colour family per objective, stable across pages, from Tableau 10 (hues far apart: MMC and PCL,
# centre loss and GCCS no longer look alike); a run's colour is a shade of its objective's.
# Classes get their own qualitative palette.
OBJECTIVE_COLOURS = {"ce": "#1f77b4", "gccs": "#d62728", "mmc": "#2ca02c", "isce": "#9467bd",
                     "mat": "#ff7f0e", "pcl": "#8c564b", "center": "#bcbd22"}
SHADES = (0.0, -0.35, 0.35, -0.6, 0.6)  # mixed towards black (< 0) or white (> 0)
CLASS_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf"]
X_AXES = {"epoch": "epoch", "time": "wall-clock time (s)"}


def colour_of(objective: str, index: int = 0) -> str:
    """The objective's colour, shade ``index`` of its family (the first run of an objective gets the
    family's own colour, the next ones darker and lighter shades); unknown objectives a class colour."""
    base = OBJECTIVE_COLOURS.get(objective)
    if base is None:
        return CLASS_COLOURS[index % len(CLASS_COLOURS)]
    mix = SHADES[index % len(SHADES)]
    rgb = [int(base[i:i + 2], 16) for i in (1, 3, 5)]
    rgb = [round(c + (255 - c) * mix) if mix > 0 else round(c * (1 + mix)) for c in rgb]
    return "#" + "".join(f"{c:02x}" for c in rgb)


def run_colours(runs: list[tuple[str, str]]) -> dict[str, str]:
    """{run_id: colour} for (run_id, objective) pairs: a distinct shade per run within its objective's family."""
    out: dict[str, str] = {}
    count: dict[str, int] = {}
    for run_id, objective in runs:
        if run_id not in out:
            out[run_id] = colour_of(objective, count.get(objective, 0))
            count[objective] = count.get(objective, 0) + 1
    return out


def _x(history: list[dict], x_axis: str) -> list[float]:
    return [h["epoch"] if x_axis == "epoch" else h["time"] for h in history]


def accuracy_figure(runs: list[dict], x_axis: str = "epoch") -> go.Figure:
    """Test (solid) and running train (dotted) accuracy of every run on one shared axis.

    ``runs``: dicts with ``label``, ``objective`` and ``history`` (the per-epoch metrics)."""
    fig = go.Figure()
    colours = run_colours([(run["label"], run["objective"]) for run in runs])
    for run in runs:
        colour, hist = colours[run["label"]], run["history"]
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
    colours = run_colours([(run["label"], run["objective"]) for run in runs])
    for i, run in enumerate(runs):
        hist = run["history"]
        parts = list(hist[0]["loss"]) if hist else []
        # A panel with a value ≤ 0 (e.g. GCCS's literal kurtosis term) stays linear: a log axis would
        # silently drop those points.
        panel_log = log_y and all(h["loss"][p] > 0 for h in hist for p in parts)
        for j, part in enumerate(parts):
            fig.add_trace(go.Scatter(x=_x(hist, x_axis), y=[h["loss"][part] for h in hist], mode="lines",
                                     name=f"{run['label']} · {part}",
                                     line=dict(color=colours[run["label"]],
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
    colours = run_colours([(run["label"], run["objective"]) for run in runs])
    for run in runs:
        hist = [h for h in run["history"] if name in h.get("diagnostics", {})]
        if hist:
            fig.add_trace(go.Scatter(x=_x(hist, x_axis), y=[h["diagnostics"][name] for h in hist], mode="lines",
                                     name=run["label"], line=dict(color=colours[run["label"]])))
    fig.update_layout(title=f"Diagnostic: {name} (test split, per epoch)", xaxis_title=X_AXES[x_axis],
                      yaxis_title=name, height=300, margin=dict(l=10, r=10, t=50, b=10))
    return fig


def _class_name(c: int, names: list[str] | None) -> str:
    return names[c] if names and c < len(names) else str(c)


def _simplex_frame(points: np.ndarray, vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What both simplex views frame: the nearest-centre boundary rays (``engine.latent.region_boundaries``,
    long enough to leave any frame around the data) and the data's bounds (points and vertices), lo, hi."""
    spread = np.vstack([points, vertices])
    reach = 2 * float(np.abs(spread - spread.mean(axis=0)).max()) + 1e-9
    return region_boundaries(vertices, reach), spread.min(axis=0), spread.max(axis=0)


def simplex_figure(z: np.ndarray, y: np.ndarray, classes: list[int], geometry: np.ndarray | None,
                   title: str, class_names: list[str] | None = None) -> go.Figure:
    """Points of three classes projected onto the plane through their three centres, with the
    centres drawn as a triangle (GCCS: vertices μ_T·e_i; CE: the class means)."""
    points, labels, vertices = simplex_view(z, y, classes, geometry)
    fig = go.Figure()
    tri = np.vstack([vertices, vertices[:1]])
    fig.add_trace(go.Scatter(x=tri[:, 0], y=tri[:, 1], mode="lines", line=dict(color="#888", width=1),
                             name="centres" if geometry is not None else "class means", hoverinfo="skip"))
    # the nearest-centre regions of the three classes (GCCS's decision regions among them)
    rays, lo, hi = _simplex_frame(points, vertices)
    for i, (start, end) in enumerate(rays):
        fig.add_trace(go.Scatter(x=[start[0], end[0]], y=[start[1], end[1]], mode="lines",
                                 line=dict(color="#888", width=1, dash="dash"), hoverinfo="skip",
                                 name="nearest-centre boundaries", legendgroup="boundaries", showlegend=i == 0))
    for k, c in enumerate(classes):
        mask = labels == c
        name = _class_name(c, class_names)
        fig.add_trace(go.Scatter(x=points[mask, 0], y=points[mask, 1], mode="markers",
                                 marker=dict(size=5, color=CLASS_COLOURS[k % 10], opacity=0.7),
                                 name=f"class {name}"))
        fig.add_trace(go.Scatter(x=[vertices[k, 0]], y=[vertices[k, 1]], mode="markers+text", text=[name],
                                 textposition="top center", textfont=dict(size=12, color=CLASS_COLOURS[k % 10]),
                                 marker=dict(size=14, symbol="x", color=CLASS_COLOURS[k % 10],
                                             line=dict(width=2, color="#000")),
                                 showlegend=False, hovertemplate=f"centre of class {name}<extra></extra>"))
    pad = 0.08 * (hi - lo) + 1e-9  # the plot frames the data; the boundary rays run off its edges
    fig.update_xaxes(range=[lo[0] - pad[0], hi[0] + pad[0]])
    fig.update_yaxes(range=[lo[1] - pad[1], hi[1] + pad[1]])
    fig.update_layout(title=title, height=360, margin=dict(l=10, r=10, t=40, b=10),
                      xaxis_title="plane axis 1", yaxis_title="plane axis 2", legend=dict(font_size=10))
    fig.update_yaxes(scaleanchor="x", scaleratio=1)  # true proportions: compare scales across panels
    return fig


def embedding_figure(points: np.ndarray, y: np.ndarray, title: str, class_names: list[str] | None = None) -> go.Figure:
    """Every class's points in a 2-D embedding (``engine.latent.embedding_2d``), one colour per class."""
    fig = go.Figure()
    for k, c in enumerate(np.unique(y)):
        mask = y == c
        # SVG, not WebGL: a page of six runs would hold twelve WebGL contexts beside the 3-D views, and
        # Chromium keeps only sixteen; a few thousand points draw as fast either way
        fig.add_trace(go.Scatter(x=points[mask, 0], y=points[mask, 1], mode="markers", name=_class_name(int(c),
                                   class_names), marker=dict(size=4, color=CLASS_COLOURS[k % 10], opacity=0.7)))
    fig.update_layout(title=title, height=360, margin=dict(l=10, r=10, t=40, b=10), legend=dict(font_size=10),
                      xaxis_title="axis 1", yaxis_title="axis 2")
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


# --- robustness --------------------------------------------------------------------------------------
# What a line is: the headline, or what only bounds it from above (../shared/spec/attacks.md, "The
# headline is a per-sample worst case"). Natural corruptions are no attacks and bound nothing. The
# legend groups lines by objective (a colour family each); the kind is in the line's style (bold or
# thin), its name and its hover text.
WORST_CASE_GROUP = "worst case over every attack tried (the headline)"
UPPER_BOUND_GROUP = "one attack alone: an upper bound"
CORRUPTION_GROUP = "one natural corruption (not an attack)"


def _objective_rank(objective: str) -> int:
    """Objectives in a fixed order (the colour table's), so every chart's legend lists them alike."""
    order = list(OBJECTIVE_COLOURS)
    return order.index(objective) if objective in order else len(order)


def robustness_figure(chart: dict, height: int = 380) -> go.Figure:
    """Accuracy vs ε of one attack (``engine.suites.robustness_charts``): one line per run, colour per
    objective, the legend grouped by objective (clicking an objective's title hides its lines, a line's
    name hides that line). The per-sample worst case over every attack tried (``worst_case`` lines) is
    bold; each attack alone is a thin line named "… alone" and hovering as an upper bound on it. A seed
    group (``chart["groups"]``: runs that differ only by seed) is a bold mean line with a translucent
    band of its 95 % CI, and the worst-case lines of its seeds turn thin and faint beside it.
    Adversarially trained runs dashed; an adaptive attack drawn in its run's colour with open diamonds
    and a dotted line, so standard and adaptive results of a run read as a pair."""
    from engine.attacks import ATTACKS
    from engine.suites import WORST_CASE

    fig = go.Figure()
    colours = run_colours([(line["run_id"], line["objective"]) for line in chart["lines"]])
    seeds: dict[str, set] = {}
    for line in chart["lines"]:
        seeds.setdefault(line["run_id"], set()).add(line["seed"])
    groups = chart.get("groups", [])
    grouped = {(run_id, g["attack_seed"]) for g in groups for run_id in g["run_ids"]}
    traces: list[tuple[tuple, go.Scatter]] = []  # (legend order, trace): objective, then headline first

    def legend(objective: str) -> dict:
        return dict(legendgroup=f"objective-{objective}", legendgrouptitle_text=objective.upper())

    for line in chart["lines"]:
        colour = colours[line["run_id"]]
        name = f"{line['objective'].upper()} ({line['run_id'][:6]})"
        if line["adversarially_trained"]:
            name += " · adv. trained"
        if len(seeds[line["run_id"]]) > 1:  # the same run attacked with several seeds: tell the lines apart
            name += f" · seed {line['seed']}"
        order = (_objective_rank(line["objective"]), line["objective"])
        if line.get("worst_case"):
            name += " · worst case"
            # how many attack settings each point is the worst case over (ε = 0 is the clean accuracy)
            over = [("clean accuracy" if n == 0 else f"over {n} attack setting{'s' * (n != 1)}" if n else "")
                    for n in line.get("attacks", [None] * len(line["eps"]))]
            dash = "dash" if line["adversarially_trained"] else "solid"
            style = dict(line=dict(color=colour, dash=dash, width=4), marker=dict(symbol="circle", size=8))
            if (line["run_id"], line["seed"]) in grouped:  # its group's mean is the bold line; the seed stays, faint
                style = dict(opacity=0.35, line=dict(color=colour, dash=dash, width=1.5),
                             marker=dict(symbol="circle", size=5))
            traces.append(((*order, 1, line["run_id"]), go.Scatter(
                x=line["eps"], y=line["accuracy"], mode="lines+markers", name=name, customdata=over,
                **legend(line["objective"]), **style,
                hovertemplate=f"{name}<br>ε %{{x:g}}<br>worst case %{{y:.4f}} (%{{customdata}})<br>"
                              f"{WORST_CASE_GROUP}<extra></extra>")))
            continue
        dash = ("dashdot" if line["adaptive"] else "dash") if line["adversarially_trained"] else \
            ("dot" if line["adaptive"] else "solid")
        spec = ATTACKS.get(line["attack"])
        corruption = spec is not None and spec.budget in ("sigma", "degrees")
        name += f" · {line['attack']}" + ("" if corruption else " alone")
        if line["params"] and not chart.get("shared_params"):
            name += f" · {line['params']}"
        kind = CORRUPTION_GROUP if corruption else UPPER_BOUND_GROUP
        traces.append(((*order, 2, line["run_id"], line["adaptive"], line["attack"]), go.Scatter(
            x=line["eps"], y=line["accuracy"], mode="lines+markers", name=name, **legend(line["objective"]),
            line=dict(color=colour, dash=dash, width=1.5),
            marker=dict(symbol="diamond-open" if line["adaptive"] else "circle", size=7 if line["adaptive"] else 5),
            hovertemplate=f"{name}<br>ε %{{x:g}}<br>accuracy %{{y:.4f}}<br>{kind}<extra></extra>")))
    for group in groups:
        order = (_objective_rank(group["objective"]), group["objective"], 0, group["key"], group["attack_seed"])
        several = sum(g["key"] == group["key"] for g in groups) > 1
        for i, trace in enumerate(_group_traces(group, colour_of(group["objective"]), several)):
            traces.append(((*order, i), trace.update(**legend(group["objective"]))))
    for _, trace in sorted(traces, key=lambda t: t[0]):
        fig.add_trace(trace)
    if chart["attack"] == WORST_CASE:
        title = f"Worst case over every attack tried · {chart['samples']} test samples"
    else:
        attacks = [l for l in chart["lines"] if not l.get("worst_case")]
        shared = attacks[0]["params"] if chart.get("shared_params") and attacks else ""
        title = f"{chart['title']}" + (f" · {shared}" if shared else "") + f" · {chart['samples']} test samples"
    # groupclick: a click on a line's name hides that line; on an objective's title, the objective
    fig.update_layout(title=dict(text=title, font_size=13), height=height, margin=dict(l=10, r=10, t=50, b=10),
                      xaxis_title=chart.get("axis", "ε"), yaxis_title="accuracy (true label)",
                      yaxis_range=[-0.02, 1.02], legend=dict(font_size=10, groupclick="toggleitem"),
                      hovermode="closest")
    return fig


def _translucent(colour: str, alpha: float) -> str:
    """``#rrggbb`` as ``rgba(r, g, b, alpha)``: a band in the line's own colour that the lines show through."""
    r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r}, {g}, {b}, {alpha})"


def _group_title(group: dict) -> str:
    """What a seed group's mean line stands for."""
    return (f"{group['objective'].upper()}, seeds {', '.join(map(str, group['seeds']))}: "
            "mean ± 95 % CI (Student t) of the worst case")


def _group_traces(group: dict, colour: str, several_attack_seeds: bool) -> list[go.Scatter]:
    """One seed group of ``engine.suites.robustness_charts``: its 95 % CI as a translucent band, then
    its mean bold on top (the band first, so the mean is drawn over it)."""
    n = len(group["run_ids"])
    name = f"{group['objective'].upper()} mean of {n} seeds"
    if several_attack_seeds:  # the same runs attacked with several seeds: tell the means apart
        name += f" · attack seed {group['attack_seed']}"
    name += " · worst case"
    upper = [m + c for m, c in zip(group["mean"], group["ci95"])]
    lower = [m - c for m, c in zip(group["mean"], group["ci95"])]
    # the band: along the upper edge and back along the lower one, filled inside
    band = go.Scatter(
        x=group["eps"] + group["eps"][::-1], y=upper + lower[::-1], mode="lines", fill="toself",
        fillcolor=_translucent(colour, 0.2), line=dict(width=0), hoverinfo="skip", showlegend=False,
        name=f"{name} · 95 % CI")
    mean = go.Scatter(
        x=group["eps"], y=group["mean"], mode="lines+markers", name=name, customdata=group["ci95"],
        line=dict(color=colour, dash="dash" if group["adversarially_trained"] else "solid", width=4),
        marker=dict(symbol="circle", size=8),
        hovertemplate=f"{name}<br>ε %{{x:g}}<br>mean %{{y:.4f}} ± %{{customdata:.4f}}<br>"
                      f"{_group_title(group)}<extra></extra>")
    return [band, mean]


# --- latents under attack ----------------------------------------------------------------------------
def _segments(a: np.ndarray, b: np.ndarray) -> tuple[list, list]:
    """Line segments a_i → b_i as one trace: x and y with None between segments (fast for 1000s)."""
    n = len(a)
    xs = np.full(3 * n, np.nan)
    ys = np.full(3 * n, np.nan)
    xs[0::3], xs[1::3] = a[:, 0], b[:, 0]
    ys[0::3], ys[1::3] = a[:, 1], b[:, 1]
    return xs.tolist(), ys.tolist()


def _shift_traces(view: dict, classes: list[int], class_names, arrows: bool, trajectories: bool) -> list:
    traces = []
    for k, c in enumerate(classes):
        colour = CLASS_COLOURS[k % 10]
        mask = view["labels"] == c
        traces.append(go.Scatter(x=view["clean"][mask, 0], y=view["clean"][mask, 1], mode="markers",
                                 marker=dict(size=4, color=colour, opacity=0.18), name=f"{_class_name(c, class_names)} clean",
                                 legendgroup=f"c{c}", hoverinfo="skip"))
        traces.append(go.Scatter(x=view["attacked"][mask, 0], y=view["attacked"][mask, 1], mode="markers",
                                 marker=dict(size=5, color=colour, opacity=0.9, line=dict(width=0.5, color="#000")),
                                 name=f"{_class_name(c, class_names)} attacked", legendgroup=f"c{c}"))
        if arrows:
            xs, ys = _segments(view["clean"][mask], view["attacked"][mask])
            traces.append(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color=colour, width=0.6), opacity=0.45,
                                     name=f"{_class_name(c, class_names)} moves", legendgroup=f"c{c}",
                                     showlegend=False, hoverinfo="skip"))
        if trajectories:
            tmask = view["trajectory_labels"] == c
            path = view["trajectory"][:, tmask]  # (T, m, 2)
            xs, ys = [], []
            for j in range(path.shape[1]):
                xs += path[:, j, 0].tolist() + [None]
                ys += path[:, j, 1].tolist() + [None]
            traces.append(go.Scatter(x=xs, y=ys, mode="lines+markers", line=dict(color=colour, width=1.2),
                                     marker=dict(size=2.5, color=colour), name=f"{_class_name(c, class_names)} PGD path",
                                     legendgroup=f"c{c}", showlegend=False, hoverinfo="skip"))
    tri = np.vstack([view["vertices"], view["vertices"][:1]])
    traces.append(go.Scatter(x=tri[:, 0], y=tri[:, 1], mode="lines+markers", line=dict(color="#444", width=1),
                             marker=dict(symbol="x", size=10, color="#000"), name="centres", hoverinfo="skip"))
    return traces


def _shift_axes(views: list[dict]) -> tuple[list[float], list[float]]:
    """One range for every ε, so an animation keeps its axes while the points move."""
    pts = np.vstack([np.vstack([v["clean"], v["attacked"], v["vertices"], v["trajectory"].reshape(-1, 2)])
                     for v in views])
    lo, hi = pts.min(0), pts.max(0)
    pad = 0.05 * (hi - lo).max() + 1e-9
    return [lo[0] - pad, hi[0] + pad], [lo[1] - pad, hi[1] + pad]


def shift_figure(view: dict, classes: list[int], class_names=None, arrows: bool = True, trajectories: bool = False,
                 title: str = "", axes: tuple | None = None) -> go.Figure:
    """Clean latents faint, attacked bold, optional arrows clean → attacked and attack trajectories,
    in the plane through the three clean centres (``engine.latent.shift_view``)."""
    fig = go.Figure(_shift_traces(view, classes, class_names, arrows, trajectories))
    xr, yr = axes or _shift_axes([view])
    fig.update_layout(title=dict(text=title, font_size=13), height=380, margin=dict(l=10, r=10, t=40, b=10),
                      xaxis=dict(title="plane axis 1", range=xr), yaxis=dict(title="plane axis 2", range=yr),
                      legend=dict(font_size=9))
    fig.update_yaxes(scaleanchor="x", scaleratio=1)
    return fig


def _frame_title(label: str, view: dict, alone: str) -> str:
    return (f"{label} · ε = {view['eps']:g}<br><sub>{alone} {view['accuracy']:.3f} · "
            f"{view['left_region']:.0%} left their region</sub>")


def shift_animation_runs(runs: list[tuple[str, list[dict]]], classes: list[int], class_names=None,
                         arrows: bool = True, trajectories: bool = False, alone: str = "accuracy") -> go.Figure:
    """Every run's view under attack side by side in one figure with one frame per ε, so a single
    play button and slider move all of them together; each panel's title follows the frame with its
    accuracy and the share of points that left their region; trajectories stay in every frame.
    ``runs``: (label, views over the same ε grid, as ``engine.latent.shift_view`` makes them)."""
    n = len(runs)
    grid = [v["eps"] for v in runs[0][1]]

    def traces(index: int) -> list:
        out = []
        for j, (_, views) in enumerate(runs):
            suffix = "" if j == 0 else str(j + 1)
            for trace in _shift_traces(views[index], classes, class_names, arrows, trajectories):
                trace.update(xaxis=f"x{suffix}", yaxis=f"y{suffix}")
                if j:  # one legend: the classes share their colours across panels
                    trace.update(showlegend=False)
                out.append(trace)
        return out

    fig = make_subplots(rows=1, cols=n, subplot_titles=[_frame_title(label, views[0], alone) for label, views in runs],
                        horizontal_spacing=0.06)
    for trace in traces(0):
        fig.add_trace(trace)
    titles = list(fig.layout.annotations)

    def frame_titles(index: int) -> list:
        return [dict(t.to_plotly_json(), text=_frame_title(label, views[index], alone))
                for t, (label, views) in zip(titles, runs)]

    fig.frames = [go.Frame(data=traces(i), name=f"{e:g}", layout=dict(annotations=frame_titles(i)))
                  for i, e in enumerate(grid)]
    for j, (_, views) in enumerate(runs):
        xr, yr = _shift_axes(views)
        fig.update_xaxes(range=xr, title_text="plane axis 1", row=1, col=j + 1)
        fig.update_yaxes(range=yr, scaleanchor="x" if j == 0 else f"x{j + 1}", scaleratio=1, row=1, col=j + 1)
    steps = [dict(method="animate", label=f"{e:g}",
                  args=[[f"{e:g}"], dict(mode="immediate", frame=dict(duration=0, redraw=True),
                                         transition=dict(duration=0))]) for e in grid]
    fig.update_layout(
        height=480, margin=dict(l=10, r=10, t=70, b=10), legend=dict(font_size=9),
        updatemenus=[dict(type="buttons", showactive=False, x=0, y=-0.12, xanchor="left", buttons=[
            dict(label="▶ play", method="animate",
                 args=[None, dict(frame=dict(duration=900, redraw=True), transition=dict(duration=300),
                                  fromcurrent=True, mode="immediate")]),
            dict(label="❚❚", method="animate", args=[[None], dict(frame=dict(duration=0), mode="immediate")])])],
        sliders=[dict(active=0, currentvalue=dict(prefix="ε = "), x=0.15, len=0.85, y=-0.05, steps=steps)])
    return fig


def distance_histogram(view: dict, label: str, distance: str = "centre") -> go.Figure:
    """Distance to the own centre (or ‖z‖) of every subset point, clean vs attacked (MMC Fig. 2)."""
    fig = go.Figure()
    fig.add_trace(go.Histogram(x=view["distance_clean"], name="clean", opacity=0.55, marker_color="#636efa",
                               nbinsx=40))
    fig.add_trace(go.Histogram(x=view["distance_attacked"], name=f"attacked (ε = {view['eps']:g})", opacity=0.55,
                               marker_color="#ef553b", nbinsx=40))
    fig.update_layout(barmode="overlay", height=260, margin=dict(l=10, r=10, t=36, b=10), legend=dict(font_size=9),
                      title=dict(text=label, font_size=12),
                      xaxis_title="‖z‖" if distance == "norm" else "distance to own centre", yaxis_title="points")
    return fig


def transfer_heatmap(sources: list[str], targets: list[str], accuracy: list[list[float]], title: str) -> go.Figure:
    """Accuracy of each target run (columns) on examples crafted on each substitute run (rows), MMC Fig. 4;
    the diagonal is the white-box accuracy."""
    fig = go.Figure(go.Heatmap(z=accuracy, x=targets, y=sources, zmin=0, zmax=1, colorscale="Viridis",
                               text=[[f"{v:.3f}" for v in row] for row in accuracy], texttemplate="%{text}",
                               hovertemplate="substitute %{y}<br>target %{x}<br>accuracy %{z:.4f}<extra></extra>"))
    fig.update_layout(title=dict(text=title, font_size=13), height=120 + 60 * len(sources),
                      margin=dict(l=10, r=10, t=50, b=10), xaxis_title="target (classifies)",
                      yaxis_title="substitute (crafts)", yaxis_autorange="reversed")
    return fig


# --- studies ---------------------------------------------------------------------------------------
def _axis_text(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def study_figure(results: dict, metric: str, dataset: str, gain: bool = False) -> go.Figure:
    """One metric of a study's cells (mean, 95 % CI as error bars) against the study's first grid
    axis, one line per objective and value of the other axes; a cell without that axis (the
    baseline in a sweep of another objective's constant) is a dashed level with its CI as a band.
    ``gain``: the paired difference to the baseline cell instead of the value (GCCS Fig. 2)."""
    cells = [c for c in results["cells"] if c["dataset"] == dataset]
    axes = list(results["definition"]["grid"])
    x_axis = axes[0] if axes else None
    fig = go.Figure()
    series: dict[tuple, list[dict]] = {}
    for cell in cells:
        rest = tuple((k, v) for k, v in cell["settings"].items() if k != x_axis)
        series.setdefault((cell["objective"], rest), []).append(cell)

    def point(cell):
        if gain:
            g = cell["gain"].get(metric)
            return (None, None) if not g else (g["mean_difference"], g["ci95"])
        m = cell["metrics"].get(metric) or {}
        return m.get("mean"), m.get("ci95")

    xs_all = [_axis_text(c["settings"][x_axis]) for c in cells if x_axis in c["settings"]]
    xs_all = list(dict.fromkeys(xs_all))
    colours = run_colours([(key, key[0]) for key in series])  # a shade of the objective's family per series
    for (objective, rest), members in series.items():
        name = objective.upper() + "".join(f" · {k.rpartition('.')[2]} {_axis_text(v)}" for k, v in rest)
        colour = colours[(objective, rest)]
        ys = [point(c) for c in members]
        if x_axis is None or x_axis not in members[0]["settings"]:
            mean, ci = ys[0]
            if mean is None or not xs_all:
                fig.add_trace(go.Bar(x=[name], y=[mean], error_y=dict(type="data", array=[ci or 0]), name=name,
                                     marker_color=colour))
                continue
            fig.add_trace(go.Scatter(x=xs_all, y=[mean] * len(xs_all), mode="lines", name=f"{name} (no {x_axis})",
                                     line=dict(color=colour, dash="dash")))
            if ci:
                fig.add_trace(go.Scatter(x=xs_all + xs_all[::-1], y=[mean + ci] * len(xs_all) + [mean - ci] * len(xs_all),
                                         fill="toself", fillcolor=_translucent(colour, 0.15), line=dict(width=0),
                                         hoverinfo="skip", showlegend=False))
            continue
        fig.add_trace(go.Scatter(x=[_axis_text(c["settings"][x_axis]) for c in members], y=[m for m, _ in ys],
                                 error_y=dict(type="data", array=[ci or 0 for _, ci in ys], visible=True),
                                 mode="lines+markers", name=name, line=dict(color=colour)))
    what = f"gain over {str(results['baseline']).upper()} in {metric}" if gain else metric
    fig.update_layout(title=f"{results['title'] or results['study']} · {dataset}: {what} (mean ± 95 % CI over "
                            f"seeds {', '.join(map(str, results['seeds']))})",
                      xaxis_title=x_axis or "cell", yaxis_title=what, height=400, margin=dict(l=10, r=10, t=60, b=10),
                      legend=dict(font_size=11))
    if gain:
        fig.add_hline(y=0, line=dict(color="grey", width=1))
    return fig


# --- hover views (Altair) ------------------------------------------------------------------------------
# Plotly cannot put an image in a hover label. A Vega-Lite tooltip can: vega-tooltip (which
# st.altair_chart's vega-embed uses) shows the image whose URL a tooltip field titled "image" holds,
# and a PNG data URL (engine.latent_samples) needs no server.
HOVER_VIEW_PX = 300  # the plot area of a hover view, square: equal domains then mean equal axis scales
# width and height are the plot area's, title, axes and legend come on top; st.altair_chart's default
# ("fit") would squeeze those into the width and height and stretch one axis against the other
HOVER_AUTOSIZE = alt.AutoSizeParams(type="pad", contains="padding")


def hover_table(y: np.ndarray, samples: dict, keep: np.ndarray, class_names: list[str] | None = None) -> pd.DataFrame:
    """One tooltip row per kept point: its image (a PNG data URL), label, prediction, confidence,
    whether it is misclassified, and its test index. ``y``: the labels of every point of the view's
    latents, ``samples``: ``engine.latent_samples.latent_samples`` of the same points in the same order,
    ``keep``: which of them the view draws (a boolean mask)."""
    y = np.asarray(y)
    if len(samples["images"]) != len(y) or not np.array_equal(np.asarray(samples["labels"]), y):
        raise ValueError("the samples are not those of these latent points (other labels or another number)")
    predictions = np.asarray(samples["predictions"])[keep]
    return pd.DataFrame({
        "image": [url for url, kept in zip(samples["images"], keep) if kept],
        "label": [_class_name(int(c), class_names) for c in y[keep]],
        "prediction": [_class_name(int(c), class_names) for c in predictions],
        "confidence": np.round(np.asarray(samples["confidence"], dtype=np.float64)[keep], 3),
        "misclassified": np.where(predictions != y[keep], "yes", "no"),
        "test index": np.asarray(samples["indices"])[keep].astype(int),
    })


def _hover_tooltip(prediction_note: str | None) -> list[alt.Tooltip]:
    """The tooltip of ``hover_table``'s columns. vega-tooltip shows the image of the field titled
    "image"; ``prediction_note`` is said beside the prediction when it is not of the model whose
    latents are drawn (e.g. "final model" over an earlier epoch's latents)."""
    suffix = f" ({prediction_note})" if prediction_note else ""
    return [alt.Tooltip("image:N", title="image"), alt.Tooltip("label:N", title="label"),
            alt.Tooltip("prediction:N", title=f"prediction{suffix}"),
            alt.Tooltip("confidence:Q", title=f"confidence{suffix}", format=".3f"),
            alt.Tooltip("misclassified:N", title=f"misclassified{suffix}"),
            alt.Tooltip("test index:Q", title="test index")]


def _class_colours(names: list[str]) -> alt.Scale:
    """The class palette of the Plotly views: the k-th class drawn gets CLASS_COLOURS[k]."""
    return alt.Scale(domain=names, range=[CLASS_COLOURS[k % len(CLASS_COLOURS)] for k in range(len(names))])


def simplex_hover_chart(z: np.ndarray, y: np.ndarray, classes: list[int], geometry: np.ndarray | None, samples: dict,
                        title: str, class_names: list[str] | None = None, prediction_note: str | None = None,
                        size: int = HOVER_VIEW_PX) -> alt.LayerChart:
    """``simplex_figure`` as a Vega-Lite chart whose tooltip shows each point's image, label and the
    run's prediction (``hover_table``): the points of three classes in the plane through their centres,
    the triangle of centres with each class's name at its vertex, and the nearest-centre boundaries
    dashed. Both axes span the same length on a square plot, so the plane keeps its proportions."""
    points, _, vertices = simplex_view(z, y, classes, geometry)
    table = hover_table(y, samples, np.isin(y, classes), class_names)  # the rows simplex_view projects
    table["x"], table["y"] = points[:, 0], points[:, 1]
    rays, lo, hi = _simplex_frame(points, vertices)
    half = 0.54 * float((hi - lo).max()) + 1e-9  # half the longer side and 8 % on each end, for both axes
    middle = (lo + hi) / 2
    x = alt.X("x:Q", title="plane axis 1", scale=alt.Scale(domain=[middle[0] - half, middle[0] + half], nice=False))
    y_axis = alt.Y("y:Q", title="plane axis 2", scale=alt.Scale(domain=[middle[1] - half, middle[1] + half], nice=False))
    names = [_class_name(c, class_names) for c in classes]
    colour = alt.Color("label:N", title="class", scale=_class_colours(names), legend=alt.Legend(orient="bottom"))
    centres = pd.DataFrame({"x": vertices[:, 0], "y": vertices[:, 1], "label": names})
    triangle = pd.DataFrame({"x": vertices[[0, 1, 2, 0], 0], "y": vertices[[0, 1, 2, 0], 1], "order": range(4)})
    boundaries = pd.DataFrame({"x": rays[:, 0, 0], "y": rays[:, 0, 1], "x2": rays[:, 1, 0], "y2": rays[:, 1, 1]})
    layers = [  # the rays run past the frame: clipped to it, as Plotly clips them to its axes
        alt.Chart(boundaries).mark_rule(color="#888", strokeWidth=1, strokeDash=[6, 4], clip=True)
        .encode(x=x, y=y_axis, x2="x2:Q", y2="y2:Q"),
        alt.Chart(triangle).mark_line(color="#888", strokeWidth=1, clip=True).encode(x=x, y=y_axis, order="order:O"),
        alt.Chart(table).mark_circle(size=30, opacity=0.7)
        .encode(x=x, y=y_axis, color=colour, tooltip=_hover_tooltip(prediction_note)),
        alt.Chart(centres).mark_point(shape="cross", size=200, filled=True, stroke="#000", strokeWidth=1)
        .encode(x=x, y=y_axis, color=colour),
        alt.Chart(centres).mark_text(dy=-16, fontSize=13, fontWeight="bold")  # may stand above the frame
        .encode(x=x, y=y_axis, color=colour, text="label:N"),
    ]
    return alt.layer(*layers).properties(title=title, width=size, height=size, autosize=HOVER_AUTOSIZE)


def embedding_hover_chart(points: np.ndarray, y: np.ndarray, samples: dict, title: str,
                          class_names: list[str] | None = None, prediction_note: str | None = None,
                          size: int = HOVER_VIEW_PX) -> alt.Chart:
    """``embedding_figure`` as a Vega-Lite chart whose tooltip shows each point's image, label and the
    run's prediction (``hover_table``): every class's points in a 2-D embedding
    (``engine.latent.embedding_2d``), one colour per class."""
    y = np.asarray(y)
    table = hover_table(y, samples, np.ones(len(y), dtype=bool), class_names)
    table["x"], table["y"] = points[:, 0], points[:, 1]
    names = [_class_name(int(c), class_names) for c in np.unique(y)]
    colour = alt.Color("label:N", title="class", scale=_class_colours(names), legend=alt.Legend(orient="bottom"))
    return (alt.Chart(table).mark_circle(size=20, opacity=0.7)
            .encode(x=alt.X("x:Q", title="axis 1", scale=alt.Scale(zero=False)),
                    y=alt.Y("y:Q", title="axis 2", scale=alt.Scale(zero=False)),
                    color=colour, tooltip=_hover_tooltip(prediction_note))
            .properties(title=title, width=size, height=size, autosize=HOVER_AUTOSIZE))
