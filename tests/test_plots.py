"""The PNG figures of datadistill.io.plots: valid PNGs of the expected size, axis scales, bad input."""

import pytest
from PIL import Image

from datadistill.errors import ConfigError
from datadistill.io.plots import (accuracy_vs_ipc_figure, accuracy_vs_time_figure, learning_curves_figure,
                                  loss_curve_figure, plot_accuracy_vs_ipc, plot_accuracy_vs_time,
                                  plot_learning_curves, plot_loss_curve, png_bytes)


def curves(whole_data=True, seconds=True):
    def run(offset, scale=1.0):
        out = {"train_accuracy": [10 + offset, 60 + offset, 95], "test_accuracy": [10 + offset, 50 + offset, 70 + offset]}
        if seconds:
            out["seconds"] = [0.1 * scale, 1.0 * scale, 2.0 * scale]
        return out

    data = {"synthetic": {"model": "convnet", "epochs": [0, 5, 10], "runs": [run(0), run(2), run(-1)]},
            "whole_data": None}
    if whole_data:
        data["whole_data"] = {"model": "convnet", "epochs": [0, 1, 2], "runs": [run(5, 100.0)]}
    return data


ROWS = [{"label": label, "ipc": ipc, "accuracy_mean": 50.0 + ipc / 2 + k, "accuracy_std": 1.0 + k,
         "distill_seconds": 10.0 * ipc * (k + 1)}
        for k, label in enumerate(["dm", "datadam"]) for ipc in (1, 10, 50)]


def assert_png(path, size):
    assert path.is_file() and path.stat().st_size > 0
    with Image.open(path) as img:
        assert img.format == "PNG"
        img.load()
        assert img.size == size
        colours = img.convert("RGB").getcolors(maxcolors=1 << 16)
        assert colours is None or len(colours) > 20  # something was drawn
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_loss_curve(tmp_path):
    path = plot_loss_curve([(i, 5.0 / (i + 1)) for i in range(50)], tmp_path / "sub" / "loss.png", title="DM <loss>")
    assert path == tmp_path / "sub" / "loss.png"
    assert_png(path, (640, 400))
    assert loss_curve_figure([[0, 1.0], [1, 0.5]]).axes[0].get_yscale() == "log"  # JSON gives lists
    assert loss_curve_figure([(0, 1.0), (1, -0.5)]).axes[0].get_yscale() == "linear"
    assert loss_curve_figure([(0, 2.0)]).axes[0].get_yscale() == "log"  # a single point still draws


def test_loss_curve_bad_input_writes_nothing(tmp_path):
    with pytest.raises(ConfigError, match="loss history is empty"):
        plot_loss_curve([], tmp_path / "loss.png")
    with pytest.raises(ConfigError, match="entry 1"):
        plot_loss_curve([(0, 1.0), (1, 2.0, 3.0)], tmp_path / "loss.png")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("whole_data", [True, False])
@pytest.mark.parametrize("seconds", [True, False])
def test_learning_curves(tmp_path, whole_data, seconds):
    path = plot_learning_curves(curves(whole_data, seconds), tmp_path / "curves.png")
    assert_png(path, (1100 if seconds else 640, 420))
    fig = learning_curves_figure(curves(whole_data, seconds))
    assert len(fig.axes) == (2 if seconds else 1)
    labels = fig.axes[0].get_legend_handles_labels()[1]
    expected = ["synthetic (convnet): test", "synthetic (convnet): train"]
    if whole_data:
        expected += ["whole data (convnet): test", "whole data (convnet): train"]
    assert labels == expected
    lines = fig.axes[0].get_lines()
    assert [ln.get_linestyle() for ln in lines] == ["-", "--"] * (2 if whole_data else 1)
    # mean over the three synthetic runs (offsets 0, 2, -1)
    assert list(lines[0].get_ydata()) == pytest.approx([10 + 1 / 3, 50 + 1 / 3, 70 + 1 / 3])
    if seconds and whole_data:  # 0.1 s … 200 s: log axis
        assert fig.axes[1].get_xscale() == "log"


def test_learning_curves_without_train_accuracy(tmp_path):
    data = curves(whole_data=False, seconds=False)
    for run in data["synthetic"]["runs"]:
        del run["train_accuracy"]
    fig = learning_curves_figure(data)
    assert fig.axes[0].get_legend_handles_labels()[1] == ["synthetic (convnet): test"]


def test_learning_curves_bad_input(tmp_path):
    with pytest.raises(ConfigError, match="learning curves are empty"):
        plot_learning_curves({}, tmp_path / "c.png")
    with pytest.raises(ConfigError, match="learning curves are empty"):
        plot_learning_curves({"synthetic": None, "whole_data": None}, tmp_path / "c.png")
    data = curves()
    data["synthetic"]["runs"] = []
    with pytest.raises(ConfigError, match="'synthetic' has no runs"):
        plot_learning_curves(data, tmp_path / "c.png")
    data = curves()
    data["whole_data"]["epochs"] = []
    with pytest.raises(ConfigError, match="'whole_data' has no epochs"):
        plot_learning_curves(data, tmp_path / "c.png")
    data = curves()
    data["synthetic"]["runs"][1]["test_accuracy"].append(1.0)
    with pytest.raises(ConfigError, match="run 1: test_accuracy has 4 values for 3 epochs"):
        plot_learning_curves(data, tmp_path / "c.png")
    assert list(tmp_path.iterdir()) == []


def test_accuracy_vs_ipc(tmp_path):
    assert_png(plot_accuracy_vs_ipc(ROWS, tmp_path / "ipc.png"), (640, 420))
    fig = accuracy_vs_ipc_figure(ROWS)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert ax.get_legend_handles_labels()[1] == ["dm", "datadam"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "10", "50"]
    two = [r for r in ROWS if r["ipc"] != 50]
    assert accuracy_vs_ipc_figure(two).axes[0].get_xscale() == "linear"
    no_std = [{k: v for k, v in r.items() if k != "accuracy_std"} for r in ROWS]
    png_bytes(accuracy_vs_ipc_figure(no_std))  # std is optional


def test_accuracy_vs_time(tmp_path):
    assert_png(plot_accuracy_vs_time(ROWS, tmp_path / "time.png"), (760, 440))
    fig = accuracy_vs_time_figure(ROWS)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    titles = sorted(lg.get_title().get_text() for lg in fig.legends)
    assert titles == ["IPC", "method"]
    zero = [*ROWS, {"label": "random", "ipc": 10, "accuracy_mean": 40.0, "accuracy_std": 2.0, "distill_seconds": 0.0}]
    assert accuracy_vs_time_figure(zero).axes[0].get_xscale() == "symlog"


@pytest.mark.parametrize("figure", [accuracy_vs_ipc_figure, accuracy_vs_time_figure])
def test_twelve_methods_get_twelve_colours(figure):
    """A comparison of every method (12 labels) must not reuse a colour (tab10 has 10)."""
    from matplotlib.colors import to_hex
    rows = [{"label": f"m{i}", "ipc": ipc, "accuracy_mean": 50.0 + i, "accuracy_std": 1.0, "distill_seconds": 1.0 + i}
            for i in range(12) for ipc in (1, 10)]
    ax = figure(rows).axes[0]
    colours = {to_hex(c.get_color()) for c in ax.lines if c.get_xydata().size}
    assert len(colours) == 12


@pytest.mark.parametrize("plot", [plot_accuracy_vs_ipc, plot_accuracy_vs_time])
def test_accuracy_plots_bad_input(tmp_path, plot):
    with pytest.raises(ConfigError, match="the list of rows is empty"):
        plot([], tmp_path / "a.png")
    with pytest.raises(ConfigError, match="row 1 has no 'accuracy_mean'"):
        plot([ROWS[0], {k: v for k, v in ROWS[1].items() if k != "accuracy_mean"}], tmp_path / "a.png")
    assert list(tmp_path.iterdir()) == []


def test_accuracy_vs_time_needs_seconds(tmp_path):
    with pytest.raises(ConfigError, match="row 0 has no 'distill_seconds'"):
        plot_accuracy_vs_time([{k: v for k, v in ROWS[0].items() if k != "distill_seconds"}], tmp_path / "t.png")
