"""The plotly figures: what they draw, from hand-made histories and latents."""
import numpy as np
import pytest

from ui.figures import (accuracy_figure, diagnostic_names, diagnostics_figure, latent_3d_figure, loss_figure,
                        simplex_figure)


def history(parts, epochs=3):
    return [{"epoch": e, "time": 0.5 * e, "train_acc": 0.1 * e, "test_acc": 0.2 * e,
             "loss": {k: v * e for k, v in parts.items()}} for e in range(1, epochs + 1)]


def test_accuracy_figure_has_test_and_train_lines_per_run_on_the_chosen_axis():
    runs = [{"label": "CE", "objective": "ce", "history": history({"loss": 1.0})},
            {"label": "GCCS", "objective": "gccs", "history": history({"loss": 5.0, "kl": 4.0, "kurtosis": 1.0})}]
    fig = accuracy_figure(runs, "time")
    assert [t.name for t in fig.data] == ["CE · test", "CE · train", "GCCS · test", "GCCS · train"]
    assert list(fig.data[0].x) == [0.5, 1.0, 1.5] and list(fig.data[0].y) == [0.2, 0.4, 0.6000000000000001]
    assert fig.data[0].line.color != fig.data[2].line.color
    assert fig.layout.xaxis.title.text == "wall-clock time (s)"


def test_loss_figure_panels_and_log_axis_only_for_positive_values():
    runs = [{"label": "CE", "objective": "ce", "history": history({"loss": 1.0})},
            {"label": "GCCS", "objective": "gccs", "history": history({"loss": 5.0, "kl": 6.0, "kurtosis": -1.0})}]
    fig = loss_figure(runs, "epoch", log_y=True)
    assert len(fig.data) == 4
    assert fig.layout.yaxis.type == "log"  # CE panel
    assert fig.layout.yaxis2.type == "linear" and "≤ 0" in fig.layout.yaxis2.title.text
    assert min(fig.data[3].y) == -3.0  # the negative part is drawn, not clipped


def test_latent_figures_draw_points_and_centres():
    geometry = 70 * np.eye(10)
    y = np.repeat(np.arange(10), 5)
    z = geometry[y] + np.random.default_rng(0).normal(size=(50, 10))
    fig2d = simplex_figure(z, y, [0, 1, 9], geometry, "t")
    triangle = fig2d.data[0]
    assert len(triangle.x) == 4 and triangle.x[0] == triangle.x[3]  # closed triangle
    assert sum(len(t.x) for t in fig2d.data if t.name and t.name.startswith("class")) == 15
    fig3d = latent_3d_figure(z, y, [0, 1, 9], geometry, "t")
    centres = fig3d.data[-1]
    assert list(centres.x[:3]) == [70, 0, 0] and fig3d.layout.scene.xaxis.title.text == "z_0"


def test_diagnostics_figure_plots_each_run_that_has_the_diagnostic():
    with_diag = history({"loss": 1.0})
    for h in with_diag:
        h["diagnostics"] = {"mean_norm_z": 2.0 * h["epoch"]}
    runs = [{"label": "MAT", "objective": "mat", "history": with_diag},
            {"label": "CE", "objective": "ce", "history": history({"loss": 1.0})}]
    assert diagnostic_names(runs) == ["mean_norm_z"]
    fig = diagnostics_figure(runs, "mean_norm_z")
    assert [t.name for t in fig.data] == ["MAT"] and list(fig.data[0].y) == [2.0, 4.0, 6.0]


def _line(run, attack, eps, accuracy, worst_case=False, adaptive=False, adversarially_trained=False, **extra):
    """A line as engine.suites.robustness_charts makes it; runs are named "<objective>-<id>"."""
    objective, run = run.split("-")
    return {"run_id": run, "objective": objective, "attack": attack, "params": "" if worst_case else "steps=3",
            "seed": 0, "adaptive": adaptive, "worst_case": worst_case, "adversarially_trained": adversarially_trained,
            "eps": eps, "accuracy": accuracy, **extra}


def test_robustness_figure_draws_the_worst_case_bold_and_single_attacks_as_upper_bounds():
    from ui.figures import UPPER_BOUND_GROUP, WORST_CASE_GROUP, robustness_figure

    chart = {"attack": "pgd", "samples": 40, "title": "PGD", "axis": "ε", "shared_params": True, "warnings": [],
             "lines": [_line("gccs-a1b2c3d4", "pgd", [0, 0.1], [0.9, 0.6]),
                       _line("gccs-a1b2c3d4", "adaptive-pgd", [0, 0.1], [0.9, 0.4], adaptive=True),
                       _line("ce-e5f6a7b8", "pgd", [0, 0.1], [0.9, 0.3], adversarially_trained=True),
                       _line("gccs-a1b2c3d4", "worst case", [0, 0.1], [0.9, 0.35], worst_case=True, attacks=[0, 6])]}
    fig = robustness_figure(chart)
    # the legend is grouped by objective, in a fixed objective order, each run's headline first
    adv, worst, pgd, adaptive = fig.data
    assert [t.legendgrouptitle.text for t in fig.data] == ["CE", "GCCS", "GCCS", "GCCS"]
    assert adv.legendgroup != worst.legendgroup == pgd.legendgroup == adaptive.legendgroup
    assert worst.name == "GCCS (a1b2c3) · worst case" and worst.line.width == 4 and worst.line.dash == "solid"
    assert worst.line.color == pgd.line.color  # the run's colour
    assert WORST_CASE_GROUP in worst.hovertemplate and "over 6 attack settings" in worst.customdata[1]
    assert [t.name for t in (pgd, adaptive, adv)] == ["GCCS (a1b2c3) · pgd alone", "GCCS (a1b2c3) · adaptive-pgd alone",
                                                      "CE (e5f6a7) · adv. trained · pgd alone"]
    for single in (pgd, adaptive, adv):
        assert single.line.width == 1.5 and UPPER_BOUND_GROUP in single.hovertemplate
    assert UPPER_BOUND_GROUP == "one attack alone: an upper bound"
    # the existing conventions: adaptive dotted with open diamonds, adversarially trained dashed
    assert adaptive.line.dash == "dot" and adaptive.marker.symbol == "diamond-open" and adv.line.dash == "dash"
    assert fig.layout.title.text == "PGD · steps=3 · 40 test samples"

    headline = {**chart, "attack": "worst case", "title": "Worst case over every attack tried",
                "lines": [chart["lines"][-1]]}
    assert robustness_figure(headline).layout.title.text == "Worst case over every attack tried · 40 test samples"


def test_robustness_figure_does_not_call_a_natural_corruption_an_upper_bound():
    from ui.figures import CORRUPTION_GROUP, robustness_figure

    chart = {"attack": "rotation", "samples": 40, "title": "rotation", "axis": "degrees", "shared_params": True,
             "lines": [_line("ce-e5f6a7b8", "rotation", [0, 10], [0.9, 0.8])], "warnings": []}
    (line,) = robustness_figure(chart).data
    assert CORRUPTION_GROUP in line.hovertemplate and "upper bound" not in line.hovertemplate
    assert line.name == "CE (e5f6a7) · rotation" and line.legendgrouptitle.text == "CE"


def test_robustness_figure_draws_a_seed_group_as_a_bold_mean_with_a_band():
    from ui.figures import WORST_CASE_GROUP, robustness_figure

    seeds = [_line("ce-c0c0c0c0", "worst case", [0, 0.1], [0.9, 0.2], worst_case=True, attacks=[0, 2]),
             _line("ce-c1c1c1c1", "worst case", [0, 0.1], [0.95, 0.3], worst_case=True, attacks=[0, 2])]
    alone = _line("gccs-a1b2c3d4", "worst case", [0, 0.1], [0.9, 0.5], worst_case=True, attacks=[0, 2])
    group = {"group": True, "key": "k", "objective": "ce", "run_ids": ["c0c0c0c0", "c1c1c1c1"], "seeds": [0, 1],
             "attack_seed": 0, "adversarially_trained": False, "eps": [0, 0.1], "mean": [0.925, 0.25],
             "ci95": [0.3, 0.6]}
    chart = {"attack": "worst case", "samples": 40, "title": "Worst case over every attack tried", "axis": "ε",
             "shared_params": True, "warnings": [], "lines": [*seeds, alone], "groups": [group]}
    fig = robustness_figure(chart)
    band, mean, first, second, gccs = fig.data  # CE's group first: band, mean, then its faint seeds
    # the group's mean: bold, in CE's colour, named for its seeds, hovering its CI
    assert mean.name == "CE mean of 2 seeds · worst case" and mean.line.width == 4
    assert list(mean.y) == [0.925, 0.25] and list(mean.customdata) == [0.3, 0.6]
    assert mean.line.color == first.line.color == "#1f77b4" != second.line.color  # each seed its own shade
    # its band: mean ± ci95, along the upper edge and back along the lower one, translucent CE blue
    assert band.fill == "toself" and band.showlegend is False and band.fillcolor == "rgba(31, 119, 180, 0.2)"
    assert list(band.x) == [0, 0.1, 0.1, 0] and list(band.y) == pytest.approx([1.225, 0.85, -0.35, 0.625])
    # the seeds stay visible but thin and faint, in their objective's legend group; a lone run stays bold
    for seed in (first, second):
        assert seed.line.width == 1.5 and seed.opacity == 0.35 and seed.legendgroup == mean.legendgroup == band.legendgroup
    assert mean.legendgrouptitle.text == "CE" and "CE, seeds 0, 1: mean ± 95 % CI (Student t) of the worst case" \
        in mean.hovertemplate
    assert gccs.line.width == 4 and gccs.opacity is None and gccs.legendgrouptitle.text == "GCCS"
    assert WORST_CASE_GROUP in gccs.hovertemplate
    # without groups the same lines are all bold
    assert all(t.line.width == 4 for t in robustness_figure({**chart, "groups": []}).data)


def test_the_simplex_view_labels_its_vertices_and_draws_the_nearest_centre_boundaries():
    from engine.latent import region_boundaries, simplex_view

    geometry = 70 * np.eye(10)
    y = np.repeat(np.arange(10), 5)
    z = geometry[y] + np.random.default_rng(0).normal(size=(50, 10))
    names = [f"name{c}" for c in range(10)]
    fig = simplex_figure(z, y, [0, 1, 9], geometry, "t", names)
    labelled = [t for t in fig.data if t.mode == "markers+text"]
    assert [t.text[0] for t in labelled] == ["name0", "name1", "name9"]
    boundaries = [t for t in fig.data if t.name == "nearest-centre boundaries"]
    assert len(boundaries) == 3 and sum(bool(t.showlegend) for t in boundaries) == 1
    # every point of a ray is equidistant from its two vertices and no nearer to the third
    _, _, vertices = simplex_view(z, y, [0, 1, 9], geometry)
    rays = region_boundaries(vertices, reach=100.0)
    for (start, end), (p, q, other) in zip(rays, ((0, 1, 2), (1, 2, 0), (2, 0, 1))):
        for t in (0.0, 0.3, 1.0):
            point = start + t * (end - start)
            dp, dq, do = (np.linalg.norm(point - vertices[i]) for i in (p, q, other))
            assert abs(dp - dq) < 1e-9 and do >= dp - 1e-9
    # an obtuse triangle: the circumcentre lies outside, the rays still separate the regions
    obtuse = np.array([[0.0, 0.0], [10.0, 0.0], [5.0, 1.0]])
    for (start, end), (p, q, other) in zip(region_boundaries(obtuse, 50.0), ((0, 1, 2), (1, 2, 0), (2, 0, 1))):
        point = start + 0.5 * (end - start)
        assert np.linalg.norm(point - obtuse[other]) >= np.linalg.norm(point - obtuse[p]) - 1e-9
    assert region_boundaries(np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]), 5.0).shape == (0, 2, 2)


def test_all_classes_are_embedded_in_two_dimensions_by_pca_or_t_sne():
    from engine.latent import embedding_2d
    from ui.figures import embedding_figure

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(10), 30)
    z = 70 * np.eye(10)[y] + rng.normal(size=(300, 10))
    pca = embedding_2d(z, "pca")
    assert pca.shape == (300, 2)
    # PCA keeps the latent's distances along its axes: the variance it shows is the two largest
    assert np.isclose(pca.var(axis=0).sum(), np.sort(np.linalg.eigvalsh(np.cov(z.T, bias=True)))[-2:].sum())
    tsne = embedding_2d(z, "t-sne")
    assert tsne.shape == (300, 2) and np.allclose(tsne, embedding_2d(z, "t-sne"))  # seeded
    # t-SNE keeps neighbourhoods: each point's nearest neighbour shares its class
    d = np.linalg.norm(tsne[:, None] - tsne[None], axis=-1) + np.eye(300) * 1e9
    assert (y[d.argmin(axis=1)] == y).mean() > 0.95
    assert embedding_2d(z[:, :1], "pca").shape == (300, 2)
    fig = embedding_figure(pca, y, "t", [f"n{c}" for c in range(10)])
    assert [t.name for t in fig.data] == [f"n{c}" for c in range(10)] and sum(len(t.x) for t in fig.data) == 300
    with pytest.raises(ValueError, match="pca, t-sne"):
        embedding_2d(z, "umap")


def test_each_objective_has_a_colour_family_far_from_the_others_and_each_run_its_own_shade():
    from ui.figures import OBJECTIVE_COLOURS, colour_of, run_colours

    def rgb(colour):
        return np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)], dtype=float)

    bases = list(OBJECTIVE_COLOURS.values())
    gaps = [np.linalg.norm(rgb(a) - rgb(b)) for i, a in enumerate(bases) for b in bases[i + 1:]]
    assert min(gaps) > 90  # the pairs that clashed (MMC vs PCL, centre vs GCCS) now differ clearly
    colours = run_colours([("a", "gccs"), ("b", "gccs"), ("c", "ce"), ("d", "gccs"), ("a", "gccs")])
    assert colours["a"] == OBJECTIVE_COLOURS["gccs"] and colours["c"] == OBJECTIVE_COLOURS["ce"]
    assert len({colours["a"], colours["b"], colours["d"]}) == 3  # three GCCS runs, three shades
    assert colour_of("gccs", 1) == "#8b191a"  # a darker shade of the family's red


def _shift_view(eps: float, accuracy: float, rng) -> dict:
    labels = np.repeat([0, 1, 9], 4)
    clean = rng.normal(size=(12, 2))
    return {"eps": eps, "clean": clean, "attacked": clean + eps, "labels": labels,
            "vertices": np.array([[0.0, 1.0], [-1.0, -1.0], [1.0, -1.0]]),
            "trajectory": np.stack([clean[:6] + t * eps for t in np.linspace(0, 1, 4)]),
            "trajectory_labels": labels[:6], "accuracy": accuracy, "left_region": 1 - accuracy}


def test_one_animation_moves_every_run_together_with_titles_and_trajectories_following_the_frame():
    from ui.figures import shift_animation_runs

    rng = np.random.default_rng(0)
    grid = [0.0, 0.05, 0.1]
    runs = [("CE (aaaaaa)", [_shift_view(e, 1 - 4 * e, rng) for e in grid]),
            ("GCCS (bbbbbb)", [_shift_view(e, 1 - 2 * e, rng) for e in grid])]
    fig = shift_animation_runs(runs, [0, 1, 9], arrows=True, trajectories=True, alone="pgd alone: an upper bound")
    assert [f.name for f in fig.frames] == ["0", "0.05", "0.1"]
    assert len(fig.layout.updatemenus) == 1 and len(fig.layout.sliders) == 1  # one play button for all runs
    assert all(len(f.data) == len(fig.data) for f in fig.frames)
    assert {t.xaxis for t in fig.frames[2].data} == {"x", "x2"}  # both panels in every frame
    assert any(t.name and t.name.endswith("PGD path") for t in fig.frames[2].data)  # trajectories kept
    titles = [a.text for a in fig.frames[2].layout.annotations]
    assert titles[0].startswith("CE (aaaaaa) · ε = 0.1") and "0.600" in titles[0] and "40% left" in titles[0]
    assert "GCCS (bbbbbb) · ε = 0.1" in titles[1] and "pgd alone: an upper bound 0.800" in titles[1]
    assert sum(bool(t.showlegend is not False) for t in fig.data if t.xaxis == "x2") == 0  # one legend


def _hover_samples(y, seed=0):
    """What engine.latent_samples gives for points labelled ``y``: tiny real PNG data URLs, every
    fifth point misclassified as the next class."""
    from engine.latent_samples import png_data_url

    rng = np.random.default_rng(seed)
    predictions = np.where(np.arange(len(y)) % 5 == 0, (y + 1) % 10, y)
    return {"images": [png_data_url(rng.random((8, 8))) for _ in y], "labels": y, "predictions": predictions,
            "confidence": rng.uniform(0.2, 1.0, len(y)), "indices": 3 * np.arange(len(y)) + 1}


def _layer_rows(spec, layer):
    return spec["datasets"][layer["data"]["name"]]


def test_hover_simplex_chart_shows_image_label_and_prediction_with_the_plotly_view_s_geometry():
    from engine.latent import simplex_view
    from ui.figures import CLASS_COLOURS, simplex_hover_chart

    geometry = 70 * np.eye(10)
    y = np.repeat(np.arange(10), 5)
    z = geometry[y] + np.random.default_rng(0).normal(size=(50, 10))
    samples = _hover_samples(y)
    names = [f"name{c}" for c in range(10)]
    spec = simplex_hover_chart(z, y, [0, 1, 9], geometry, samples, "t", names).to_dict()
    rules, triangle, dots, crosses, texts = spec["layer"]
    # the points: the three classes in simplex_view's order, each with its own image, label and prediction
    rows = _layer_rows(spec, dots)
    points, _, vertices = simplex_view(z, y, [0, 1, 9], geometry)
    kept = np.flatnonzero(np.isin(y, [0, 1, 9]))
    assert len(rows) == 15 and np.allclose([[r["x"], r["y"]] for r in rows], points)
    assert [r["test index"] for r in rows] == list(samples["indices"][kept])
    assert [r["image"] for r in rows] == [samples["images"][i] for i in kept]
    assert [r["label"] for r in rows] == [names[c] for c in y[kept]]
    assert [r["prediction"] for r in rows] == [names[c] for c in samples["predictions"][kept]]
    assert [r["misclassified"] for r in rows] == ["yes" if i % 5 == 0 else "no" for i in kept]
    tooltip = {t["field"]: t["title"] for t in dots["encoding"]["tooltip"]}
    assert tooltip["image"] == "image"  # vega-tooltip shows the image of the field titled "image"
    assert {"label", "prediction", "confidence", "misclassified", "test index"} <= set(tooltip)
    colour = dots["encoding"]["color"]["scale"]
    assert colour == {"domain": ["name0", "name1", "name9"], "range": CLASS_COLOURS[:3]}
    # each class's name at its vertex, the closed triangle of centres
    centres = _layer_rows(spec, texts)
    assert texts["encoding"]["text"]["field"] == "label" and crosses["mark"]["shape"] == "cross"
    assert [c["label"] for c in centres] == ["name0", "name1", "name9"]
    assert np.allclose([[c["x"], c["y"]] for c in centres], vertices)
    corners = [[r["x"], r["y"]] for r in sorted(_layer_rows(spec, triangle), key=lambda r: r["order"])]
    assert len(corners) == 4 and np.allclose(corners[0], corners[3]) and np.allclose(corners[:3], vertices)
    # the three nearest-centre boundaries, dashed: every end of a ray is equidistant from its two vertices
    assert rules["mark"]["strokeDash"] and rules["mark"]["type"] == "rule"
    rays = _layer_rows(spec, rules)
    assert len(rays) == 3
    for ray, (p, q) in zip(rays, ((0, 1), (1, 2), (2, 0))):
        for end in ([ray["x"], ray["y"]], [ray["x2"], ray["y2"]]):
            assert np.isclose(np.linalg.norm(end - vertices[p]), np.linalg.norm(end - vertices[q]))
    # equal scales: a square plot whose two axes span the same length and frame every point and centre
    x_domain = dots["encoding"]["x"]["scale"]["domain"]
    y_domain = dots["encoding"]["y"]["scale"]["domain"]
    assert spec["width"] == spec["height"] and np.isclose(np.ptp(x_domain), np.ptp(y_domain))
    assert spec["autosize"]["type"] == "pad"  # the size is the plot's: Streamlit's "fit" would squeeze it unevenly
    spread = np.vstack([points, vertices])
    assert (spread[:, 0] > x_domain[0]).all() and (spread[:, 0] < x_domain[1]).all()
    assert (spread[:, 1] > y_domain[0]).all() and (spread[:, 1] < y_domain[1]).all()
    # over an earlier epoch's latents the prediction is said to be the final model's
    later = simplex_hover_chart(z, y, [0, 1, 9], geometry, samples, "t", names, prediction_note="final model").to_dict()
    titles = [t["title"] for t in later["layer"][2]["encoding"]["tooltip"]]
    assert "prediction (final model)" in titles and "misclassified (final model)" in titles


def test_hover_embedding_chart_shows_every_class_with_its_image_and_refuses_samples_of_other_points():
    from ui.figures import CLASS_COLOURS, embedding_hover_chart

    y = np.repeat(np.arange(10), 3)
    samples = _hover_samples(y)
    points = np.random.default_rng(1).normal(size=(30, 2))
    spec = embedding_hover_chart(points, y, samples, "all classes · PCA").to_dict()
    rows = spec["datasets"][spec["data"]["name"]]
    assert len(rows) == 30 and [r["image"] for r in rows] == samples["images"]
    assert np.allclose([[r["x"], r["y"]] for r in rows], points)
    assert {t["field"]: t["title"] for t in spec["encoding"]["tooltip"]}["image"] == "image"
    assert spec["encoding"]["color"]["scale"] == {"domain": [str(c) for c in range(10)], "range": CLASS_COLOURS}
    with pytest.raises(ValueError, match="not those of these latent points"):
        embedding_hover_chart(points, y, {**samples, "labels": y[::-1]}, "t")
    with pytest.raises(ValueError, match="not those of these latent points"):
        embedding_hover_chart(points[:29], y[:29], samples, "t")
