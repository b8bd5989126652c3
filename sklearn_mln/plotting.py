"""Plots of evolution and of what a loss looks like (matplotlib, imported lazily).

- :func:`plot_evolution`: best / mean / median fitness per generation of a fitted
  :class:`~sklearn_mln.MLNEvolver`, with the CMA-ES step size on a twin axis.
- :func:`plot_loss_shape`: a loss and its derivative as a function of the predicted
  probability of the true class, beside classical losses.
- :func:`plot_benchmark`: test accuracy against training images per class, one panel per
  architecture, from a :func:`sklearn_mln.benchmark.small_data_benchmark` result.
- :func:`plot_time_to_quality`: the quality of a loss against the wall time it took to get
  (evolution runs as curves, tuned classical losses as points), from
  ``benchmarks/time_to_quality.py``.

matplotlib is an optional dependency (``pip install sklearn-mln[plot]``); it is only
imported when a function here is called.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

__all__ = [
    "loss_curve",
    "plot_benchmark",
    "plot_evolution",
    "plot_loss_shape",
    "plot_time_to_quality",
]

_MISSING_MATPLOTLIB = (
    "sklearn_mln.plotting needs matplotlib, which is not installed; "
    "install it with: pip install sklearn-mln[plot]"
)
#: default grid of true-class probabilities for plot_loss_shape
_N_POINTS = 199
#: the meta-loss is drawn in C3 (red); baselines take the other colours of the cycle
_BASELINE_COLORS = ("C0", "C1", "C2", "C4", "C5", "C6", "C7", "C8", "C9") * 4


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(_MISSING_MATPLOTLIB) from exc
    return plt


def _history(evolver) -> list[dict]:
    history = getattr(evolver, "history_", evolver)
    if hasattr(evolver, "get_params") and not hasattr(evolver, "history_"):
        raise ValueError("The evolver is not fitted yet (it has no history_); call fit first.")
    if isinstance(history, Mapping) or not isinstance(history, Sequence) or not len(history):
        raise ValueError(
            "plot_evolution needs a fitted MLNEvolver or a non-empty list of per-generation "
            f"records (its history_); got {type(evolver).__name__}."
        )
    return list(history)


def plot_evolution(evolver, ax=None):
    """Plot the fitness curve of an evolution, one point per generation.

    Draws the best, mean and median fitness of each generation's population (validation
    accuracy of classifiers trained with the candidate losses) and, on a twin y-axis (log
    scale when it spans more than a decade), the CMA-ES step size ``sigma``. When the
    evolver is fitted, the re-evaluated fitness of the chosen loss (``best_fitness_``) is
    drawn as a horizontal line: it is measured on other tasks than any generation, so it is
    the fairer number.

    Parameters
    ----------
    evolver : MLNEvolver or list of dict
        A fitted :class:`~sklearn_mln.MLNEvolver`, or its ``history_`` (records with
        ``generation``, ``best_fitness``, ``mean_fitness``, ``median_fitness`` and
        ``sigma``).
    ax : matplotlib.axes.Axes, default=None
        Where to draw the fitness curves; ``None`` makes a new figure. The sigma axis is
        ``ax.twinx()``.

    Returns
    -------
    ax : matplotlib.axes.Axes
        The fitness axes (the twin sigma axes is in ``ax.figure.axes``).

    See Also
    --------
    plot_loss_shape : What an evolved loss looks like.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn_mln import MLNEvolver
    >>> from sklearn_mln.datasets import load_digits_images
    >>> from sklearn_mln.plotting import plot_evolution
    >>> X, y = load_digits_images(return_X_y=True)
    >>> evo = MLNEvolver(n_shots=5, n_tasks=2, popsize=4, n_generations=3, inner_steps=20,
    ...                  n_reeval_tasks=2, random_state=0).fit(X[:400], y[:400])
    >>> ax = plot_evolution(evo)
    >>> ax.get_xlabel()
    'generation'
    >>> [line.get_label() for line in ax.get_lines()][:3]
    ['best', 'mean', 'median']
    """
    plt = _pyplot()
    history = _history(evolver)
    try:
        generation = np.array([h["generation"] for h in history])
        curves = {
            name: np.array([h[f"{name}_fitness"] for h in history], dtype=float)
            for name in ("best", "mean", "median")
        }
        sigma = np.array([h["sigma"] for h in history], dtype=float)
    except (KeyError, TypeError) as exc:
        raise ValueError(
            f"Each history_ record needs generation, best/mean/median_fitness and sigma: {exc}"
        ) from exc
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
    style = {"best": ("C0", "-", "o"), "mean": ("C1", "-", None), "median": ("C2", "--", None)}
    marker_every = max(1, len(generation) // 20)
    for name, values in curves.items():
        color, linestyle, marker = style[name]
        ax.plot(
            generation,
            values,
            color=color,
            linestyle=linestyle,
            marker=marker,
            markersize=3,
            markevery=marker_every,
            label=name,
        )
    best_fitness = getattr(evolver, "best_fitness_", None)
    if best_fitness is not None:
        ax.axhline(best_fitness, color="C3", linestyle=":", label="chosen loss (re-evaluated)")
    ax.set_xlabel("generation")
    ax.set_ylabel("fitness (validation accuracy)")
    ax.grid(True, alpha=0.3)

    sigma_ax = ax.twinx()
    sigma_ax.plot(generation, sigma, color="0.4", linestyle="-.", linewidth=1, label="sigma")
    sigma_ax.set_ylabel("CMA-ES step size sigma")
    if np.all(sigma > 0) and sigma.max() > 10 * sigma.min():
        sigma_ax.set_yscale("log")
    handles, labels = ax.get_legend_handles_labels()
    more_handles, more_labels = sigma_ax.get_legend_handles_labels()
    ax.legend(handles + more_handles, labels + more_labels, loc="best", fontsize="small")
    return ax


def _true_class_logits(p: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Logits whose softmax gives class 0 probability ``p``, the others ``(1 - p) / (C - 1)``."""
    rest = torch.log((1.0 - p) / (n_classes - 1))
    return torch.cat([torch.log(p)[:, None], rest[:, None].expand(-1, n_classes - 1)], dim=1)


def _label(loss, module) -> str:
    if isinstance(loss, str):
        return loss
    name = getattr(module, "name", None)
    if isinstance(name, str):
        return name
    return "meta-loss"


def loss_curve(loss, p, n_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """A loss and its derivative along the true-class probability ``p``.

    Parameters
    ----------
    loss : str, path, MetaLossNetwork, ClassicalLoss or fitted MLNEvolver
        Anything :class:`~sklearn_mln.MLNClassifier` accepts as ``meta_loss``.
    p : array-like of shape (n_points,)
        Probabilities of the true class, in ``(0, 1)``.
    n_classes : int, default=10
        The other ``n_classes - 1`` classes share ``1 - p`` equally.

    Returns
    -------
    value : ndarray of shape (n_points,)
        The loss of one sample at each ``p``.
    grad : ndarray of shape (n_points,)
        ``d loss / d p``, by autograd.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_mln.plotting import loss_curve
    >>> value, grad = loss_curve("cross_entropy", [0.5], n_classes=10)
    >>> bool(np.isclose(value[0], np.log(2))), bool(np.isclose(grad[0], -2.0))
    (True, True)
    """
    from ._losses._resolve import resolve_loss

    module = resolve_loss(loss)
    return _curve(module, np.asarray(p, dtype=np.float64), n_classes)


def _curve(module, p: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    if n_classes < 2:
        raise ValueError(f"n_classes must be at least 2, got {n_classes}.")
    if p.ndim != 1 or not np.all((p > 0) & (p < 1)):
        raise ValueError("p must be a 1-d array of probabilities strictly between 0 and 1.")
    p_t = torch.tensor(p, dtype=torch.float64, requires_grad=True)
    y = torch.zeros(len(p), dtype=torch.int64)
    with torch.enable_grad():
        logits = _true_class_logits(p_t, n_classes)
        value = module.per_sample(logits, y)
        (grad,) = torch.autograd.grad(value.sum(), p_t)
    return value.detach().numpy(), grad.numpy()


def _set_ylim(ax, *, floor=None, cap=(-np.inf, np.inf), x_from=0.0) -> None:
    """y-limits from the lines' points with ``x >= x_from``, clipped to ``cap``."""
    values = np.concatenate(
        [
            np.asarray(line.get_ydata(), float)[np.asarray(line.get_xdata(), float) >= x_from]
            for line in ax.get_lines()
        ]
    )
    values = values[np.isfinite(values)]
    if not len(values):
        return
    low, high = max(values.min(), cap[0]), min(values.max(), cap[1])
    margin = 0.05 * (high - low) if high > low else 0.5
    ax.set_ylim(low - margin if floor is None else floor, high + margin)


def plot_loss_shape(
    meta_loss,
    *,
    n_classes=10,
    baselines=("cross_entropy", "mse", "label_smoothing", "focal"),
    ax=None,
    label=None,
):
    """Plot a loss and its gradient against the predicted probability of the true class.

    For each ``p`` in ``(0, 1)`` the classifier output is built so that the true class has
    probability ``p`` and the other ``n_classes - 1`` classes share ``1 - p`` equally. The
    left panel is the loss of that one sample, the right panel its derivative
    ``d loss / d p`` (by autograd): how hard training pushes a sample that is already
    predicted with confidence ``p``. A cross-entropy-like loss falls as ``p`` rises (negative
    derivative); a loss whose derivative goes to zero early stops pushing confident samples,
    a loss that rises near ``p = 1`` (label smoothing) penalises over-confidence.

    Parameters
    ----------
    meta_loss : str, path, MetaLossNetwork, ClassicalLoss or fitted MLNEvolver
        The loss to show: anything :class:`~sklearn_mln.MLNClassifier` accepts as
        ``meta_loss``.
    n_classes : int, default=10
        Number of classes of the simulated prediction. A ``structure="joint"`` meta-loss
        needs the number of classes it was evolved for.
    baselines : sequence of str, default=("cross_entropy", "mse", "label_smoothing", \
"focal")
        Classical losses drawn beside it (thinner, dashed); ``()`` for none.
    ax : array-like of two matplotlib.axes.Axes, default=None
        The loss and gradient panels; ``None`` makes a new figure with two panels.
    label : str, default=None
        Legend label of ``meta_loss``; by default its name, or ``"meta-loss"``.

    Returns
    -------
    axes : ndarray of two matplotlib.axes.Axes
        The loss panel and the gradient panel.

    See Also
    --------
    plot_evolution : The fitness curve of an evolution.
    loss_curve : The numbers behind the plot.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn_mln import MetaLossNetwork
    >>> from sklearn_mln.plotting import plot_loss_shape
    >>> mln = MetaLossNetwork.from_label_smoothing(10, 0.2, random_state=0)
    >>> axes = plot_loss_shape(mln, baselines=("cross_entropy",), label="smoothing 0.2")
    >>> [line.get_label() for line in axes[0].get_lines()]
    ['smoothing 0.2', 'cross_entropy']
    """
    plt = _pyplot()
    from ._losses._resolve import resolve_loss

    if isinstance(baselines, str):
        baselines = (baselines,)
    module = resolve_loss(meta_loss)
    main_label = _label(meta_loss, module) if label is None else str(label)
    curves = [(main_label, module, True)]
    for name in baselines:
        if name != main_label:
            curves.append((str(name), resolve_loss(name), False))

    if ax is None:
        _, ax = plt.subplots(1, 2, figsize=(9.6, 3.8), layout="constrained")
    axes = np.asarray(ax, dtype=object).ravel()
    if len(axes) != 2:
        raise ValueError(f"ax must hold two Axes (loss, gradient), got {len(axes)}.")

    p = np.linspace(0.005, 0.995, _N_POINTS)
    colors = iter(_BASELINE_COLORS)
    for name, loss_module, is_main in curves:
        value, grad = _curve(loss_module, p, int(n_classes))
        style = (
            {"color": "C3", "linewidth": 2.5, "zorder": 3}
            if is_main
            else {"color": next(colors), "linewidth": 1.2, "linestyle": "--", "alpha": 0.8}
        )
        axes[0].plot(p, value, label=name, **style)
        axes[1].plot(p, grad, label=name, **style)

    axes[0].set_ylabel("loss")
    axes[0].set_title("loss of one sample")
    axes[1].set_ylabel("d loss / d p")
    axes[1].set_title("its derivative")
    axes[1].axhline(0.0, color="0.5", linewidth=0.8)
    for a in axes:
        a.set_xlabel("predicted probability of the true class p")
        a.set_xlim(0, 1)
        a.grid(True, alpha=0.3)
    # log-losses and their derivatives diverge at p -> 0: keep the interesting range in view
    # (from every line on the axes, so that drawing into the same axes again works)
    _set_ylim(axes[0], floor=0.0, x_from=0.05)
    _set_ylim(axes[1], cap=(-10.0, 20.0))
    axes[0].legend(fontsize="small")
    return axes


def plot_benchmark(result):
    """Mean test accuracy (95 % CI of the mean) against k, one panel per architecture.

    Parameters
    ----------
    result : :class:`~sklearn_mln.benchmark.BenchmarkResult`
        What :func:`sklearn_mln.benchmark.small_data_benchmark` returns (or its
        ``results.json``, read with :meth:`~sklearn_mln.benchmark.BenchmarkResult.load`).

    Returns
    -------
    fig : matplotlib.figure.Figure
        A figure outside pyplot's state (no global figure is created).
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(_MISSING_MATPLOTLIB) from exc

    architectures = list(result.settings.architectures)
    names = [*result.settings.baselines, *result.settings.losses]
    fig = Figure(figsize=(4.5 * len(architectures), 3.8), layout="constrained")
    axes = fig.subplots(1, len(architectures), squeeze=False)[0]
    for ax, arch in zip(axes, architectures):
        rows = sorted((r for r in result.rows if r.architecture == arch), key=lambda r: r.k)
        ks = [r.k for r in rows]
        for name in names:
            acc = [np.asarray(r.losses[name].test_accuracy) for r in rows]
            means = [a.mean() for a in acc]
            ci = [1.96 * a.std(ddof=1) / np.sqrt(len(a)) if len(a) > 1 else 0.0 for a in acc]
            ax.errorbar(ks, means, yerr=ci, marker="o", capsize=3, label=name)
        ax.set_xscale("log")
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.minorticks_off()
        ax.set_title(arch)
        ax.set_xlabel("training images per class (k)")
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize="small")
    fig.suptitle("mean test accuracy, 95 % CI of the mean (each loss tuned on its own terms)")
    return fig


def plot_time_to_quality(results: Mapping[str, dict], ax=None, *, bands: bool = True):
    """Quality of each run's loss against the wall time it took to get.

    Parameters
    ----------
    results : mapping
        Run name -> either ``{"curve": [point, ...]}`` (an evolution, scored after a growing
        number of generations) or one point. A point is ``{"seconds", "fitness", "sem"}``
        (mean accuracy on fixed tasks and its standard error). Curves are drawn as lines
        with a ±1 standard-error band, single points as markers with error bars, and a
        point at 0 seconds (a loss that costs nothing to get) as a horizontal line.
    ax : matplotlib Axes, optional
        Where to draw; by default a new figure outside pyplot's state.
    bands : bool, default=True
        Draw the standard-error bands and bars. Losses scored on the same tasks differ far
        less than the spread over tasks says; leave them out when the comparison is paired.

    Returns
    -------
    ax : matplotlib.axes.Axes
    """
    if not results:
        raise ValueError("plot_time_to_quality needs at least one run.")
    if ax is None:
        try:
            from matplotlib.figure import Figure
        except ImportError as exc:
            raise ImportError(_MISSING_MATPLOTLIB) from exc
        ax = Figure(figsize=(6.4, 4.2), layout="constrained").subplots()
    for i, (name, entry) in enumerate(results.items()):
        color = _BASELINE_COLORS[i]
        points = entry.get("curve", [entry])
        minutes = np.array([p["seconds"] for p in points]) / 60.0
        fitness = np.array([p["fitness"] for p in points])
        sem = np.array([p["sem"] for p in points]) if bands else np.zeros(len(points))
        if "curve" in entry:
            ax.plot(minutes, fitness, marker="o", color=color, label=name)
            if bands:
                ax.fill_between(minutes, fitness - sem, fitness + sem, color=color, alpha=0.2)
        elif minutes[0] == 0.0:
            ax.axhline(fitness[0], color=color, linestyle=":", label=f"{name} (no search)")
        else:
            ax.errorbar(
                minutes,
                fitness,
                yerr=sem,
                marker="s",
                linestyle="none",
                capsize=3,
                color=color,
                label=name,
            )
    ax.set_xlabel("wall time (minutes)")
    ax.set_ylabel("mean accuracy on fixed tasks")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return ax
