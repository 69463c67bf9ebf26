"""Figures (headless, Agg backend) and the explorer: its widget, its static fallback, and its
behaviour in a real kernel."""

import base64
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402

from course_lib import viz  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _is_png(data: bytes) -> bool:
    return data[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------------------
def test_attention_heatmap_shows_the_weights_and_labels():
    w = torch.softmax(torch.randn(3, 4, generator=torch.Generator().manual_seed(0)), dim=-1)
    ax = viz.attention_heatmap(w, ["a", "b", "c"], ["w", "x", "y", "z"], title="head 0")
    assert isinstance(ax, Axes)
    np.testing.assert_allclose(ax.images[0].get_array(), w.numpy())
    assert [t.get_text() for t in ax.get_xticklabels()] == ["w", "x", "y", "z"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]
    assert ax.get_title() == "head 0"
    assert ax.images[0].get_clim() == (0.0, 1.0)
    assert len(ax.texts) == 12  # annotated cells: small pattern


def test_attention_heatmap_draws_on_a_given_axes_and_scales_raw_scores():
    fig, axes = plt.subplots(1, 2)
    scores = torch.tensor([[3.0, -2.0], [0.5, 7.0]])
    ax = viz.attention_heatmap(scores, ax=axes[1], annotate=False, colorbar=False)
    assert ax is axes[1] and not ax.texts
    assert ax.images[0].get_clim() == (-2.0, 7.0)  # not in [0, 1]: automatic colour scale


def test_attention_heatmap_validates_shapes():
    with pytest.raises(ValueError, match="k_labels has 2 labels but weights has T_k=3"):
        viz.attention_heatmap(torch.rand(2, 3), ["a", "b"], ["x", "y"])
    with pytest.raises(ValueError, match=r"weights has shape \(2, 2, 2\)"):
        viz.attention_heatmap(torch.rand(2, 2, 2))


def test_positional_heatmap():
    pe = torch.sin(torch.arange(20.0)[:, None] / (1 + torch.arange(8.0))[None, :])  # (20, 8)
    ax = viz.positional_heatmap(pe)
    np.testing.assert_allclose(ax.images[0].get_array(), pe.numpy())
    assert ax.get_xlabel() == "dimension" and ax.get_ylabel() == "position"
    lo, hi = ax.images[0].get_clim()
    assert lo == -hi  # symmetric colour scale: 0 is white


def test_pca_2d_matches_an_eigendecomposition_of_the_covariance():
    g = torch.Generator().manual_seed(1)
    X = torch.randn(40, 6, generator=g) * torch.tensor([5.0, 3.0, 1.0, 0.5, 0.2, 0.1])
    coords = viz.pca_2d(X).double().numpy()
    Xc = X.double().numpy() - X.double().numpy().mean(0)
    eigvals, eigvecs = np.linalg.eigh(np.cov(Xc, rowvar=False))
    top = eigvecs[:, ::-1][:, :2]  # two largest
    expected = Xc @ top
    for k in range(2):
        sign = np.sign(coords[:, k] @ expected[:, k])
        np.testing.assert_allclose(coords[:, k], sign * expected[:, k], atol=1e-4)
    np.testing.assert_allclose(coords.var(0, ddof=1), eigvals[::-1][:2], rtol=1e-4)
    # and torch's own (randomised) PCA finds the same plane
    _, _, V = torch.pca_lowrank(X.double(), q=2, center=True, niter=10)
    np.testing.assert_allclose(np.abs(top.T @ V.numpy()), np.eye(2), atol=1e-3)


def test_embedding_map_labels_every_point_at_its_pca_coordinates():
    X = torch.randn(5, 4, generator=torch.Generator().manual_seed(2))
    labels = ["king", "queen", "man", "woman", "apple"]
    ax = viz.embedding_map(X, labels, title="words")
    np.testing.assert_allclose(ax.collections[0].get_offsets(), viz.pca_2d(X).numpy(), rtol=1e-5)
    assert [t.get_text() for t in ax.texts] == labels
    with pytest.raises(ValueError, match="labels has 2 labels but vectors has 5 rows"):
        viz.embedding_map(X, labels[:2])


def test_loss_curve_plots_training_and_eval_series():
    history = {"step": [1, 2, 3, 4], "loss": [4.0, 3.0, 2.5, 2.0], "lr": [1e-3] * 4,
               "eval_step": [2, 4], "val_loss": [3.2, 2.4]}
    ax = viz.loss_curve(history)
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"train loss", "val_loss"}
    assert list(lines["train loss"].get_xdata()) == [1, 2, 3, 4]
    assert list(lines["val_loss"].get_xdata()) == [2, 4] and list(lines["val_loss"].get_ydata()) == [3.2, 2.4]
    ax2 = viz.loss_curve([3.0, 2.0, 1.0], log_y=True)
    assert list(ax2.get_lines()[0].get_ydata()) == [3.0, 2.0, 1.0] and ax2.get_yscale() == "log"
    with pytest.raises(ValueError, match="expected at least 'loss'"):
        viz.loss_curve({"step": [1]})


# ---------------------------------------------------------------------------------------
# explorer
# ---------------------------------------------------------------------------------------
def _recorder():
    calls = []

    def render(k=1, colour="tab:blue"):
        calls.append((k, colour))
        fig, ax = plt.subplots(figsize=(2, 1.5))
        ax.plot(range(k + 1), color=colour)
        return fig

    return render, calls


def _widget_png(ex) -> bytes:
    (output,) = ex.output.outputs
    return base64.b64decode(output["data"]["image/png"])


def test_explorer_outside_ipython_renders_the_initial_values():
    import ipywidgets as widgets

    render, calls = _recorder()
    ex = viz.explorer(render, k=widgets.IntSlider(value=3, min=0, max=9), colour="tab:red")
    assert calls == [(3, "tab:red")]
    assert ex.values == {"k": 3, "colour": "tab:red"} and _is_png(ex.png)
    assert not ex.displayed
    assert plt.get_fignums() == []  # rendered to PNG and closed
    assert _widget_png(ex) == ex.png
    assert ex.controls["k"].description == "k"  # named after the argument when unnamed


def test_moving_a_control_re_renders_with_the_new_value():
    import ipywidgets as widgets

    render, calls = _recorder()
    ex = viz.explorer(render, k=widgets.IntSlider(value=2, min=0, max=9),
                      colour=widgets.Dropdown(options=["tab:blue", "tab:green"], value="tab:blue"))
    first = _widget_png(ex)
    ex.controls["k"].value = 7  # what the slider does when the learner drags it
    assert calls[-1] == (7, "tab:blue") and ex.renders == 2
    second = _widget_png(ex)
    assert _is_png(second) and second != first
    ex.controls["colour"].value = "tab:green"
    assert calls[-1] == (7, "tab:green") and _widget_png(ex) != second
    ex.update(k=1)
    assert calls[-1] == (1, "tab:green") and ex.values["k"] == 1
    assert plt.get_fignums() == []


def test_explorer_widget_layout_and_bundles():
    import ipywidgets as widgets

    render, _ = _recorder()
    slider = widgets.IntSlider(value=2, description="steps")
    ex = viz.explorer(render, k=slider)
    assert ex.widget.children[0] is slider and ex.widget.children[-1] is ex.output
    assert slider.description == "steps"  # an explicit description is kept
    figure, note = ex.mimebundles()
    assert figure[viz.WIDGET_MIME]["model_id"] == ex.widget.model_id
    assert base64.b64decode(figure["image/png"]) == ex.png  # static readers get the image
    assert note[viz.WIDGET_MIME]["model_id"] == ""  # JupyterLab hides the note ...
    assert "JupyterLab" in note["text/markdown"]  # ... everyone else reads it


def test_a_failing_re_render_shows_the_traceback_instead_of_raising():
    import ipywidgets as widgets

    def render(k=1):
        if k > 3:
            raise RuntimeError("k too large for this demo")
        fig, _ = plt.subplots()
        return fig

    ex = viz.explorer(render, k=widgets.IntSlider(value=1))
    ex.controls["k"].value = 5
    (output,) = ex.output.outputs
    assert output["output_type"] == "stream" and "k too large" in output["text"]
    assert "k too large" in ex.error
    ex.controls["k"].value = 2
    assert ex.error is None and ex.output.outputs[0]["output_type"] == "display_data"


def test_render_fn_may_return_axes_or_nothing():
    def returns_axes(k=1):
        _, ax = plt.subplots()
        ax.plot([0, k])
        return ax

    def returns_nothing(k=1):
        plt.figure()
        plt.plot([0, k])

    for fn in (returns_axes, returns_nothing):
        ex = viz.explorer(fn, k=4)
        assert _is_png(ex.png) and plt.get_fignums() == []


def test_explorer_without_ipywidgets_still_renders(monkeypatch):
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # "import ipywidgets" now fails
    render, calls = _recorder()
    ex = viz.explorer(render, k=5)
    assert calls == [(5, "tab:blue")] and ex.widget is None and ex.output is None
    figure, note = ex.mimebundles()
    assert viz.WIDGET_MIME not in figure and _is_png(base64.b64decode(figure["image/png"]))
    assert viz.WIDGET_MIME not in note and "text/markdown" in note
    ex.update(k=2)
    assert calls[-1] == (2, "tab:blue")


def test_show_displays_two_outputs_once(monkeypatch):
    import IPython
    import IPython.display

    shown = []
    class FakeShell:  # enough of an IPython shell for matplotlib, should pyplot hook into it now
        class events:
            @staticmethod
            def register(*args):
                pass

    monkeypatch.setattr(IPython, "get_ipython", lambda: FakeShell())
    monkeypatch.setattr(IPython.display, "display", lambda obj, raw=False: shown.append((obj, raw)))
    render, _ = _recorder()
    ex = viz.explorer(render, k=2)
    assert len(shown) == 2 and all(raw for _, raw in shown)
    assert "image/png" in shown[0][0] and "text/markdown" in shown[1][0]
    ex._ipython_display_()  # the explorer as the cell's value must not appear twice
    assert len(shown) == 2


def test_explorer_rejects_a_non_callable():
    with pytest.raises(ValueError, match="render_fn is int"):
        viz.explorer(3)


def test_explorer_in_a_real_kernel(tmp_path):
    """Run a notebook: the explorer as a cell's last expression gives exactly the two outputs
    (no duplicate figure from the inline backend, no repr), and a slider change re-renders."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    cells = [
        "%matplotlib inline\nimport matplotlib.pyplot as plt\nimport ipywidgets as widgets\n"
        "from course_lib.viz import explorer",
        "def show(k=1):\n    fig, ax = plt.subplots(figsize=(2, 1.5))\n    ax.plot(range(k + 1))\n    return fig\n"
        "ex = explorer(show, k=widgets.IntSlider(value=2, min=0, max=9))\nex",
        "before = ex.output.outputs[0]['data']['image/png']\nex.controls['k'].value = 6\n"
        "print(ex.renders, ex.output.outputs[0]['data']['image/png'] != before, plt.get_fignums())",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbclient.NotebookClient(nb, timeout=120, resources={"metadata": {"path": str(ROOT)}}).execute()
    outputs = nb.cells[1].outputs
    assert [o["output_type"] for o in outputs] == ["display_data", "display_data"]
    assert {"image/png", viz.WIDGET_MIME} <= set(outputs[0]["data"])
    assert outputs[1]["data"][viz.WIDGET_MIME]["model_id"] == ""
    assert nb.cells[2].outputs[0]["text"].strip() == "2 True []"


def _contrast(rgba_a, rgba_b):
    la, lb = sorted([viz.relative_luminance(rgba_a), viz.relative_luminance(rgba_b)])
    return (lb + 0.05) / (la + 0.05)


@pytest.mark.parametrize("cmap", ["Blues", "viridis", "Greys", "magma"])
def test_heatmap_numbers_contrast_with_their_cell(cmap):
    """Every annotated number is readable on its cell: contrast ratio of at least 4.5 (WCAG AA) ..."""
    from matplotlib.colors import to_rgba

    w = torch.linspace(0, 1, 25).reshape(5, 5)  # every shade of the colour map
    ax = viz.attention_heatmap(w, cmap=cmap)
    image = ax.images[0]
    assert len(ax.texts) == 25
    for text in ax.texts:
        j, i = (round(c) for c in text.get_position())
        cell = image.cmap(image.norm(float(w[i, j])))
        assert _contrast(to_rgba(text.get_color()), cell) >= 4.5, (cmap, float(w[i, j]), text.get_color())


def test_text_colour_on_picks_the_better_contrast():
    assert viz.text_colour_on((1.0, 1.0, 1.0, 1.0)) == "black"
    assert viz.text_colour_on((0.0, 0.0, 0.0, 1.0)) == "white"
    assert viz.text_colour_on((0.6, 0.75, 0.9, 1.0)) == "black"  # a pale blue: white would be unreadable
    for grey in np.linspace(0, 1, 41):
        rgba = (grey, grey, grey, 1.0)
        chosen = (1.0, 1.0, 1.0, 1.0) if viz.text_colour_on(rgba) == "white" else (0.0, 0.0, 0.0, 1.0)
        other = (0.0, 0.0, 0.0, 1.0) if chosen[0] == 1.0 else (1.0, 1.0, 1.0, 1.0)
        assert _contrast(chosen, rgba) >= _contrast(other, rgba) - 1e-9


@pytest.mark.parametrize("shape", [(3, 4), (4, 4), (8, 8), (2, 12)])
def test_heatmap_title_clears_the_colour_bar_labels(shape):
    """The colour bar's top label ("1.0") never runs into the title, however long the title."""
    w = torch.softmax(torch.randn(*shape, generator=torch.Generator().manual_seed(0)), dim=-1)
    ax = viz.attention_heatmap(w, title="hand-built head: nouns attend to their adjectives")
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    title = ax.title.get_window_extent(renderer)
    colour_bar = [a for a in fig.axes if a is not ax][0]
    labels = [t for t in colour_bar.get_yticklabels() if t.get_text()]
    assert labels
    for label in labels:
        assert not title.overlaps(label.get_window_extent(renderer)), label.get_text()
