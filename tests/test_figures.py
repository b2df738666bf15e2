"""The plotly figures: what they draw, from hand-made histories and latents."""
import numpy as np

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
