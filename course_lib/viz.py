"""Figures for the lessons, and a small interactive "explorer".

Plots (each takes an optional matplotlib ``ax`` and returns the Axes it drew on):

* :func:`attention_heatmap`  -- a (T_q, T_k) attention pattern with token labels
* :func:`positional_heatmap` -- a (positions, d_model) positional-encoding table
* :func:`embedding_map`      -- word vectors projected to 2-D with PCA, labelled
* :func:`loss_curve`         -- the history returned by ``course_lib.training.train``

Explorers
---------
``explorer(render_fn, **controls)`` re-draws a figure whenever a control (an ipywidgets
slider, dropdown, ...) moves::

    def show(temperature=1.0):
        fig, ax = plt.subplots()
        ax.bar(words, softmax(logits / temperature))
        return fig

    explorer(show, temperature=widgets.FloatSlider(value=1.0, min=0.1, max=5.0))

Notebooks are also read where no Python runs: GitHub, nbconvert HTML, nbval. So an
explorer always produces a *static* result too. It emits two outputs:

1. one bundle holding both the live widget (controls above an ``Output`` area with
   the figure as a PNG image) and a plain ``image/png`` of the initial figure.
   JupyterLab with ipywidgets shows the widget (its renderer ranks first); a reader
   without widget support shows the PNG instead.
2. a note, "Static image of the initial values ...", bundled with an *empty* widget
   view, so JupyterLab hides it while static readers show it.

Every figure is rendered to PNG and closed at once, so the inline backend never shows
it a second time. Nothing here raises because ipywidgets is missing or unusable: the
explorer then shows the static figure and the note.
"""

from __future__ import annotations

import base64
import io
import traceback
from typing import Any, Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = [
    "attention_heatmap", "positional_heatmap", "pca_2d", "embedding_map", "loss_curve", "text_colour_on",
    "figure_to_png", "Explorer", "explorer", "STATIC_NOTE",
]

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
STATIC_NOTE = ("*Static image of the initial values. Run this cell in JupyterLab "
               "(with ipywidgets) for the interactive version.*")


# ----------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------
def _as_2d(x: Any, name: str) -> torch.Tensor:
    """A tensor / array / nested list -> float tensor (rows, cols) on the CPU; ValueError otherwise."""
    t = torch.as_tensor(x.detach() if isinstance(x, torch.Tensor) else x).cpu().float()
    if t.dim() != 2:
        raise ValueError(f"{name} has shape {tuple(t.shape)}, expected a 2-D array")
    return t


def relative_luminance(rgba: Sequence[float]) -> float:
    """The WCAG relative luminance of an sRGB colour (0 = black, 1 = white).

    Each channel c in [0, 1] is linearised (c / 12.92 below 0.04045, else ((c + 0.055) / 1.055) ** 2.4),
    then L = 0.2126 R + 0.7152 G + 0.0722 B.
    """
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgba[:3]]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def text_colour_on(rgba: Sequence[float]) -> str:
    """"black" or "white", whichever contrasts more with a cell of colour ``rgba``.

    The contrast ratio of two luminances is (L_light + 0.05) / (L_dark + 0.05); black and white
    give the same contrast at L = sqrt(1.05 * 0.05) - 0.05 ~ 0.179.
    """
    return "black" if relative_luminance(rgba) > 0.179 else "white"


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


# ----------------------------------------------------------------------------------------
# plots
# ----------------------------------------------------------------------------------------
def attention_heatmap(
    weights: Any,
    q_labels: Sequence[str] | None = None,
    k_labels: Sequence[str] | None = None,
    ax: Axes | None = None,
    title: str | None = None,
    annotate: bool | None = None,
    cmap: str = "Blues",
    colorbar: bool = True,
) -> Axes:
    """Draw an attention pattern: row i = query i, column j = key j, colour = weight.

    weights (T_q, T_k): tensor or array. Rows of softmax weights sum to one; when every
    value lies in [0, 1] the colour scale is fixed to [0, 1] so that patterns are
    comparable. ``annotate`` writes the numbers in the cells (default: when there are at
    most 12 x 12 cells).
    """
    w = _as_2d(weights, "weights")  # (T_q, T_k)
    T_q, T_k = w.shape
    if q_labels is not None and len(q_labels) != T_q:
        raise ValueError(f"q_labels has {len(q_labels)} labels but weights has T_q={T_q} rows")
    if k_labels is not None and len(k_labels) != T_k:
        raise ValueError(f"k_labels has {len(k_labels)} labels but weights has T_k={T_k} columns")
    ax = _axes(ax, figsize=(1 + 0.45 * T_k, 0.8 + 0.45 * T_q))
    in_unit = bool(w.numel()) and float(w.min()) >= 0.0 and float(w.max()) <= 1.0
    image = ax.imshow(w.numpy(), cmap=cmap, vmin=0.0 if in_unit else None, vmax=1.0 if in_unit else None)
    ax.set_xticks(range(T_k), list(k_labels) if k_labels is not None else range(T_k), rotation=90)
    ax.set_yticks(range(T_q), list(q_labels) if q_labels is not None else range(T_q))
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    if annotate is None:
        annotate = T_q <= 12 and T_k <= 12
    if annotate:
        for i in range(T_q):
            for j in range(T_k):
                v = float(w[i, j])
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8,
                        color=text_colour_on(image.cmap(image.norm(v))))
    if title is not None:
        ax.set_title(title, pad=12)  # clear of the colour bar's top label
    if colorbar:
        # a colour bar exactly as tall as the pattern (imshow's square cells can make the axes shorter
        # than the space a plain colorbar(ax=...) takes, pushing its "1.0" up into the title)
        from mpl_toolkits.axes_grid1 import make_axes_locatable

        bar_ax = make_axes_locatable(ax).append_axes("right", size=0.15, pad=0.1)
        ax.figure.colorbar(image, cax=bar_ax)
    return ax


def positional_heatmap(pe: Any, ax: Axes | None = None, title: str | None = None, cmap: str = "RdBu") -> Axes:
    """Draw a positional-encoding table pe (n_positions, d_model): one row per position,
    one column per dimension (for sinusoids, values in [-1, 1]: blue = +1, red = -1)."""
    p = _as_2d(pe, "pe")  # (n_positions, d_model)
    ax = _axes(ax, figsize=(7, 4))
    bound = max(abs(float(p.min())), abs(float(p.max())), 1e-12) if p.numel() else 1.0
    image = ax.imshow(p.numpy(), cmap=cmap, vmin=-bound, vmax=bound, aspect="auto", interpolation="nearest")
    ax.set_xlabel("dimension")
    ax.set_ylabel("position")
    ax.set_title(title if title is not None else f"positional encoding ({p.shape[0]} positions x {p.shape[1]} dims)")
    ax.figure.colorbar(image, ax=ax)
    return ax


def pca_2d(vectors: Any) -> torch.Tensor:
    """Project N vectors (N, D) onto their two directions of largest variance (PCA).

    Centre the rows (X_c = X - mean), take the SVD X_c = U S V^T; the first two right
    singular vectors V[:, :2] are the principal directions and the coordinates are
    X_c @ V[:, :2] (N, 2). Signs are fixed so that the largest entry of each direction
    is positive (SVD alone leaves them arbitrary).
    """
    X = _as_2d(vectors, "vectors").double()  # (N, D)
    if X.shape[0] < 2:
        raise ValueError(f"vectors has shape {tuple(X.shape)}, expected at least 2 rows for PCA")
    X_c = X - X.mean(dim=0, keepdim=True)  # (N, D)
    _, _, Vh = torch.linalg.svd(X_c, full_matrices=False)  # Vh: (min(N, D), D)
    directions = Vh[:2]  # (k, D), k <= 2
    biggest = directions.abs().argmax(dim=1)  # (k,)
    signs = torch.sign(directions[torch.arange(len(directions)), biggest])  # (k,)
    coords = X_c @ (directions * signs[:, None]).T  # (N, k)
    if coords.shape[1] < 2:  # D == 1: nothing to show on the second axis
        coords = torch.cat([coords, torch.zeros(len(coords), 2 - coords.shape[1], dtype=coords.dtype)], dim=1)
    return coords.float()  # (N, 2)


def embedding_map(
    vectors: Any, labels: Sequence[str], ax: Axes | None = None, title: str | None = None,
    colors: Sequence[Any] | None = None,
) -> Axes:
    """Scatter word vectors (N, D) in 2-D (see :func:`pca_2d`), each point labelled."""
    X = _as_2d(vectors, "vectors")
    if len(labels) != X.shape[0]:
        raise ValueError(f"labels has {len(labels)} labels but vectors has {X.shape[0]} rows")
    xy = pca_2d(X)  # (N, 2)
    ax = _axes(ax, figsize=(6, 5))
    ax.scatter(xy[:, 0].numpy(), xy[:, 1].numpy(), c=colors if colors is not None else "tab:blue", s=25)
    for (x, y), label in zip(xy.tolist(), labels):
        ax.annotate(str(label), (x, y), textcoords="offset points", xytext=(4, 3), fontsize=9)
    ax.set_xlabel("principal component 1")
    ax.set_ylabel("principal component 2")
    if title is not None:
        ax.set_title(title)
    return ax


def loss_curve(history: Mapping[str, Sequence[float]] | Sequence[float], ax: Axes | None = None,
               title: str | None = None, log_y: bool = False) -> Axes:
    """Plot a training history.

    ``history`` is a list of losses, or a dict as returned by ``training.train``:
    ``{"step": [...], "loss": [...], "eval_step": [...], "eval" or other keys: [...]}``.
    ``loss`` is drawn against ``step``; every other series of the same length as
    ``eval_step`` is drawn against ``eval_step`` (``lr`` is left out: other scale).
    """
    ax = _axes(ax, figsize=(6, 3.5))
    if isinstance(history, Mapping):
        if "loss" not in history:
            raise ValueError(f"history has keys {sorted(history)}, expected at least 'loss'")
        loss = list(history["loss"])
        steps = list(history.get("step") or range(1, len(loss) + 1))
        if len(steps) != len(loss):
            raise ValueError(f"history has {len(steps)} steps but {len(loss)} losses")
        ax.plot(steps, loss, label="train loss")
        eval_steps = list(history.get("eval_step") or [])
        for key, series in history.items():
            if key in ("step", "loss", "lr", "eval_step") or not eval_steps or len(series) != len(eval_steps):
                continue
            ax.plot(eval_steps, list(series), marker="o", label=key)
        ax.legend()
    else:
        loss = [float(v) for v in history]
        ax.plot(range(1, len(loss) + 1), loss, label="loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if log_y:
        ax.set_yscale("log")
    if title is not None:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    return ax


# ----------------------------------------------------------------------------------------
# explorers
# ----------------------------------------------------------------------------------------
def figure_to_png(fig: Figure, dpi: int = 100) -> bytes:
    """Render a figure to PNG bytes and close it (so it is not displayed a second time)."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return buffer.getvalue()


def _png_output(png: bytes, text: str) -> dict:
    """A Jupyter ``display_data`` output holding one PNG."""
    return {"output_type": "display_data",
            "data": {"image/png": base64.b64encode(png).decode("ascii"), "text/plain": text},
            "metadata": {}}


def _is_widget(obj: Any) -> bool:
    """Something with a ``value`` we can watch (an ipywidgets control)."""
    return hasattr(obj, "value") and hasattr(obj, "observe")


class Explorer:
    """Calls ``render_fn(**values)`` for the current control values and shows the figure.

    Attributes (handy in tests and for driving an explorer from code):

    * ``controls``  name -> the widget (or the fixed value) passed in
    * ``values``    name -> current value
    * ``png``       PNG bytes of the latest figure; ``renders`` counts the renders
    * ``widget``    the ipywidgets ``VBox`` (None when ipywidgets is not usable)
    * ``output``    the ``Output`` widget holding the figure (None likewise)
    * ``error``     the traceback text of the last failed re-render, else None
    """

    def __init__(self, render_fn: Callable[..., Any], controls: Mapping[str, Any], dpi: int = 100):
        if not callable(render_fn):
            raise ValueError(f"render_fn is {type(render_fn).__name__}, expected a function that draws a figure")
        self.render_fn = render_fn
        self.controls = dict(controls)
        self.values = {name: (c.value if _is_widget(c) else c) for name, c in self.controls.items()}
        self.dpi = dpi
        self.renders = 0
        self.error: str | None = None
        self.widget = None
        self.output = None
        self.displayed = False
        self.png = self.render()  # the initial figure (errors here reach the caller)
        self._build_widget()

    # -- drawing --------------------------------------------------------------------------
    def render(self) -> bytes:
        """Run ``render_fn`` with the current values; return the figure as PNG bytes.

        ``render_fn`` may return a Figure, an Axes, or nothing (then the figure it drew on
        is used). Every figure it opened is closed.
        """
        before = set(plt.get_fignums())
        try:
            result = self.render_fn(**self.values)
            if isinstance(result, Figure):
                fig = result
            elif isinstance(result, Axes):
                fig = result.figure
            else:
                new = sorted(set(plt.get_fignums()) - before)
                fig = plt.figure(new[-1]) if new else plt.gcf()
            png = figure_to_png(fig, self.dpi)
        finally:
            for number in set(plt.get_fignums()) - before:
                plt.close(number)
        self.renders += 1
        return png

    def _text(self) -> str:
        return "Explorer(" + ", ".join(f"{k}={v!r}" for k, v in self.values.items()) + ")"

    # -- widgets --------------------------------------------------------------------------
    def _build_widget(self) -> None:
        """Controls above an Output area; never raises (no widget when ipywidgets is unusable)."""
        try:
            import ipywidgets as widgets

            ui = []
            for name, control in self.controls.items():
                if not _is_widget(control):
                    continue
                if isinstance(control, widgets.DOMWidget):
                    if hasattr(control, "description") and not control.description:
                        control.description = name
                    style = getattr(control, "style", None)
                    if hasattr(style, "description_width") and not style.description_width:
                        style.description_width = "initial"  # show the whole description
                    ui.append(control)
                control.observe(self._on_change, names="value")
            self.output = widgets.Output()
            self.output.outputs = (_png_output(self.png, self._text()),)
            self.widget = widgets.VBox(ui + [self.output])
        except Exception:  # ipywidgets missing or broken: static figure only
            self.widget = self.output = None

    def _on_change(self, change: Mapping[str, Any]) -> None:
        """ipywidgets callback: a control moved."""
        for name, control in self.controls.items():
            if control is change["owner"]:
                self._apply(name, change["new"])

    def _apply(self, name: str, value: Any) -> None:
        """Store the new value, re-render, and put the new PNG in the Output area.

        A failing ``render_fn`` shows its traceback in the Output area instead (callbacks
        have no cell to raise into).
        """
        self.values[name] = value
        try:
            self.png = self.render()
            self.error = None
            new_outputs = (_png_output(self.png, self._text()),)
        except Exception:
            self.error = traceback.format_exc()
            new_outputs = ({"output_type": "stream", "name": "stderr", "text": self.error},)
        if self.output is not None:
            self.output.outputs = new_outputs

    def update(self, **values: Any) -> None:
        """Set control values from code, as if the user had moved them."""
        for name, value in values.items():
            if name not in self.controls:
                raise ValueError(f"no control named {name!r}; controls are {sorted(self.controls)}")
            control = self.controls[name]
            if _is_widget(control):
                control.value = value  # ipywidgets calls _on_change
            else:
                self.controls[name] = value
                self._apply(name, value)

    # -- display --------------------------------------------------------------------------
    def mimebundles(self) -> list[dict]:
        """The two outputs described in the module docstring: (figure [+ widget], note)."""
        figure = {"image/png": base64.b64encode(self.png).decode("ascii"), "text/plain": self._text()}
        note = {"text/markdown": STATIC_NOTE, "text/plain": STATIC_NOTE.strip("*")}
        if self.widget is not None:
            try:
                figure[WIDGET_MIME] = self.widget._repr_mimebundle_()[WIDGET_MIME]
                # An empty model id makes JupyterLab's widget renderer hide the note.
                note[WIDGET_MIME] = {"version_major": 2, "version_minor": 0, "model_id": ""}
            except Exception:
                pass
        return [figure, note]

    def show(self) -> None:
        """Display the explorer in the notebook (does nothing outside IPython)."""
        try:
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:
            return
        if get_ipython() is None:
            return
        for bundle in self.mimebundles():
            display(bundle, raw=True)
        self.displayed = True

    def _ipython_display_(self) -> None:
        # explorer() already displayed it; showing it again as the cell's value would duplicate it
        if not self.displayed:
            self.show()

    def __repr__(self) -> str:
        return self._text()


def explorer(render_fn: Callable[..., Any], **controls: Any) -> Explorer:
    """Show ``render_fn(**values)`` and re-draw it whenever a control changes.

    ``controls``: name -> an ipywidgets control (its ``.value`` is passed) or a plain value
    (passed unchanged). In a notebook the explorer is displayed at once (see the module
    docstring for what readers without widgets see); outside IPython it only renders the
    initial figure. Returns the :class:`Explorer`.
    """
    ex = Explorer(render_fn, controls)
    ex.show()
    return ex
