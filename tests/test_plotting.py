"""Tests of sklearn_mln.plotting: what is drawn is the data, and matplotlib stays optional."""

import importlib
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from sklearn_mln import ClassicalLoss, MetaLossNetwork, MLNEvolver  # noqa: E402
from sklearn_mln.plotting import loss_curve, plot_evolution, plot_loss_shape  # noqa: E402

HISTORY = [
    {
        "generation": g,
        "best_fitness": 0.5 + 0.04 * g,
        "mean_fitness": 0.4 + 0.03 * g,
        "median_fitness": 0.41 + 0.03 * g,
        "sigma": 0.05 * 0.9**g,
        "seconds": 0.1,
        "n_failures": 0,
    }
    for g in range(6)
]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _lines(ax):
    return {line.get_label(): line for line in ax.get_lines()}


# ----------------------------------------------------------------------------- plot_evolution
def test_plot_evolution_draws_history_values():
    evolver = SimpleNamespace(history_=HISTORY, best_fitness_=0.71)
    ax = plot_evolution(evolver)
    lines = _lines(ax)
    generations = [h["generation"] for h in HISTORY]
    for name in ("best", "mean", "median"):
        np.testing.assert_array_equal(lines[name].get_xdata(), generations)
        np.testing.assert_allclose(lines[name].get_ydata(), [h[f"{name}_fitness"] for h in HISTORY])
    np.testing.assert_allclose(lines["chosen loss (re-evaluated)"].get_ydata(), [0.71, 0.71])

    (sigma_ax,) = [a for a in ax.figure.axes if a is not ax]
    (sigma_line,) = sigma_ax.get_lines()
    np.testing.assert_allclose(sigma_line.get_ydata(), [h["sigma"] for h in HISTORY])
    assert ax.get_xlabel() == "generation"
    legend_labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend_labels[-1] == "sigma" and "best" in legend_labels


def test_plot_evolution_of_a_fitted_evolver(digits):
    X, y = digits
    evolver = MLNEvolver(
        n_shots=3,
        n_tasks=1,
        popsize=2,
        n_generations=2,
        inner_steps=3,
        n_reeval_tasks=1,
        random_state=0,
    ).fit(X[:200], y[:200])
    ax = plot_evolution(evolver)
    best = _lines(ax)["best"].get_ydata()
    np.testing.assert_allclose(best, [h["best_fitness"] for h in evolver.history_])
    assert _lines(ax)["chosen loss (re-evaluated)"].get_ydata()[0] == evolver.best_fitness_


def test_plot_evolution_accepts_a_history_and_an_axes():
    fig, ax = plt.subplots()
    assert plot_evolution(HISTORY, ax=ax) is ax
    assert "chosen loss (re-evaluated)" not in _lines(ax)  # a bare history has no re-evaluation
    assert len(fig.axes) == 2


@pytest.mark.parametrize(
    "evolver, match",
    [
        (MLNEvolver(), "not fitted"),
        ([], "non-empty"),
        ({"generation": 0}, "non-empty"),
        ([{"generation": 0}], "needs generation"),
    ],
)
def test_plot_evolution_rejects_what_it_cannot_draw(evolver, match):
    with pytest.raises(ValueError, match=match):
        plot_evolution(evolver)


# ----------------------------------------------------------------------------- plot_loss_shape
def test_loss_curve_builds_the_promised_prediction():
    p = np.array([0.05, 0.3, 0.5, 0.9])
    value, grad = loss_curve("cross_entropy", p, n_classes=4)
    np.testing.assert_allclose(value, -np.log(p))
    np.testing.assert_allclose(grad, -1.0 / p)
    # MSE of softmax vs one-hot: (1 - p)^2 + (C - 1) * ((1 - p) / (C - 1))^2
    value, _ = loss_curve("mse", p, n_classes=4)
    np.testing.assert_allclose(value, (1 - p) ** 2 + (1 - p) ** 2 / 3)


def test_plot_loss_shape_draws_cross_entropy_with_negative_gradient():
    axes = plot_loss_shape("cross_entropy", baselines=())
    assert axes.shape == (2,)
    (value_line,) = axes[0].get_lines()
    grad_line = _lines(axes[1])["cross_entropy"]
    p = value_line.get_xdata()
    assert p.min() > 0 and p.max() < 1
    np.testing.assert_allclose(value_line.get_ydata(), -np.log(p))
    assert np.all(grad_line.get_ydata() < 0)  # the loss falls as the true class gets likelier
    assert axes[0].get_xlabel() == axes[1].get_xlabel()


def test_plot_loss_shape_meta_loss_and_baselines():
    mln = MetaLossNetwork.from_label_smoothing(10, 0.1, random_state=0)
    axes = plot_loss_shape(mln)
    labels = [line.get_label() for line in axes[0].get_lines()]
    assert labels == ["meta-loss", "cross_entropy", "mse", "label_smoothing", "focal"]
    lines = _lines(axes[0])
    # label smoothing is an exact point of the anchored log-prob meta-loss
    np.testing.assert_allclose(
        lines["meta-loss"].get_ydata(), lines["label_smoothing"].get_ydata(), rtol=1e-10
    )
    grad = _lines(axes[1])["meta-loss"].get_ydata()
    assert grad[0] < 0 < grad[-1]  # smoothing penalises over-confidence near p = 1
    assert len({line.get_color() for line in axes[0].get_lines()}) == len(labels)


@pytest.mark.parametrize(
    "loss, label",
    [
        ("focal", "focal"),
        (ClassicalLoss("label_smoothing", smoothing=0.2), "label_smoothing"),
        (SimpleNamespace(meta_loss_=MetaLossNetwork(random_state=0)), "meta-loss"),
    ],
)
def test_plot_loss_shape_accepts_what_mlnclassifier_accepts(loss, label):
    axes = plot_loss_shape(loss, baselines=("cross_entropy",))
    assert [line.get_label() for line in axes[1].get_lines()][0] == label


def test_plot_loss_shape_from_a_saved_file_into_given_axes(tmp_path):
    path = tmp_path / "loss.mln"
    MetaLossNetwork(random_state=0).save(path)
    fig, ax = plt.subplots(1, 2)
    axes = plot_loss_shape(path, baselines="mse", ax=ax, label="mine")
    assert axes[0] is ax[0] and axes[1] is ax[1]
    assert [line.get_label() for line in ax[0].get_lines()] == ["mine", "mse"]
    # the initial anchored network is cross-entropy exactly
    p = ax[0].get_lines()[0].get_xdata()
    np.testing.assert_allclose(ax[0].get_lines()[0].get_ydata(), -np.log(p), rtol=1e-10)


def test_plot_loss_shape_errors():
    with pytest.raises(ValueError, match="two Axes"):
        plot_loss_shape("cross_entropy", ax=plt.subplots()[1])
    joint = MetaLossNetwork(5, structure="joint", random_state=0)
    with pytest.raises(ValueError, match="5 classes"):
        plot_loss_shape(joint, n_classes=10)
    assert len(plot_loss_shape(joint, n_classes=5, baselines=())[0].get_lines()) == 1
    with pytest.raises(ValueError, match="n_classes"):
        loss_curve("cross_entropy", [0.5], n_classes=1)
    with pytest.raises(ValueError, match="strictly between"):
        loss_curve("cross_entropy", [0.0, 0.5])


def test_loss_curve_works_under_no_grad():
    with torch.no_grad():
        _, grad = loss_curve("cross_entropy", [0.25])
    np.testing.assert_allclose(grad, [-4.0])


# ----------------------------------------------------------------------------- optional matplotlib
def test_missing_matplotlib_gives_an_install_hint(monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    import sklearn_mln.plotting as plotting

    plotting = importlib.reload(plotting)  # importing the module itself needs no matplotlib
    with pytest.raises(ImportError, match=r"pip install sklearn-mln\[plot\]"):
        plotting.plot_evolution(HISTORY)
    with pytest.raises(ImportError, match=r"pip install sklearn-mln\[plot\]"):
        plotting.plot_loss_shape("cross_entropy")


def test_plot_loss_shape_keeps_a_large_loss_in_view():
    # a0 = -1 adds -sum_c log p_c: a loss far above cross-entropy everywhere
    mln = MetaLossNetwork(10, random_state=0)
    mln.set_flat_params(np.r_[-1.0, 0.0, mln.get_flat_params()[2:]])
    axes = plot_loss_shape(mln, baselines=("cross_entropy",))
    line = _lines(axes[0])["meta-loss"]
    shown = line.get_ydata()[line.get_xdata() >= 0.05]
    assert shown.min() > 5
    assert axes[0].get_ylim()[0] == 0 and axes[0].get_ylim()[1] >= shown.max()


# ----------------------------------------------------------------------------- plot_time_to_quality
def test_plot_time_to_quality_draws_curves_points_and_free_losses():
    from sklearn_mln.plotting import plot_time_to_quality

    curve = [
        {"seconds": 60.0, "fitness": 0.70, "sem": 0.01},
        {"seconds": 300.0, "fitness": 0.72, "sem": 0.01},
    ]
    ax = plot_time_to_quality(
        {
            "evolution": {"curve": curve},
            "grid": {"seconds": 240.0, "fitness": 0.71, "sem": 0.01},
            "tuned": {"seconds": 0.0, "fitness": 0.705, "sem": 0.01},
        }
    )
    lines = _lines(ax)
    np.testing.assert_allclose(lines["evolution"].get_xdata(), [1.0, 5.0])  # minutes
    np.testing.assert_allclose(lines["evolution"].get_ydata(), [0.70, 0.72])
    (grid,) = [c for c in ax.containers if c.get_label() == "grid"]
    np.testing.assert_allclose(grid.lines[0].get_xdata(), [4.0])
    np.testing.assert_allclose(lines["tuned (no search)"].get_ydata(), [0.705, 0.705])
    assert ax.figure is not None and plt.get_fignums() == []  # outside pyplot's state
    from matplotlib.collections import PolyCollection

    def bands(axes):
        return [c for c in axes.collections if isinstance(c, PolyCollection)]

    assert len(bands(ax)) == 1  # the curve's standard-error band
    assert bands(plot_time_to_quality({"evolution": {"curve": curve}}, bands=False)) == []


def test_plot_time_to_quality_refuses_nothing():
    from sklearn_mln.plotting import plot_time_to_quality

    with pytest.raises(ValueError, match="at least one run"):
        plot_time_to_quality({})
