"""The candidates of a search: the default grid, the one-at-a-time path, the pieces the
population path needs (losses and the module factory) and a scorer's view of a fold."""

from __future__ import annotations

import copy
import time
from functools import partial

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import ParameterGrid
from torch import nn

from .._classifier._estimator import MLNClassifier
from .._losses._resolve import resolve_loss

#: the parameters a candidate sets; the others are MLNClassifierCV's own, shared by all
GRID_KEYS = ("meta_loss", "lr", "max_epochs")
#: the losses of ``MLNClassifierCV()``'s candidates: the classical losses that won the
#: small-data benchmark's rows (cross-entropy, label smoothing light and strong) and the
#: shipped learned loss
DEFAULT_LOSSES = [
    "cross_entropy",
    "label_smoothing(smoothing=0.5)",
    "label_smoothing(smoothing=0.9)",
    "fashion-mnist",
]
#: the candidates of ``MLNClassifierCV()`` (48): every loss at the step sizes around both
#: of ``MLNClassifier()``'s defaults, a small step with more epochs, a larger one with
#: fewer. The epochs of a step size cost nothing beyond its largest (they are scored on
#: the way).
DEFAULT_PARAM_GRID: list[dict[str, list]] = [
    {"meta_loss": DEFAULT_LOSSES, "lr": [0.03], "max_epochs": [50, 100, 150, 200]},
    {"meta_loss": DEFAULT_LOSSES, "lr": [0.1, 0.3], "max_epochs": [25, 50, 75, 100]},
]


class Predicted(ClassifierMixin, BaseEstimator):
    """A classifier whose predictions are already made: what a scorer needs of one fold."""

    def __init__(self, classes, proba):
        self.classes = classes
        self.proba = proba

    def __sklearn_is_fitted__(self):
        return True

    @property
    def classes_(self):
        return self.classes

    def predict_proba(self, X):
        return self.proba

    def predict(self, X):
        return self.classes[np.argmax(self.proba, axis=1)]


def check_grid(param_grid) -> list[dict]:
    """The candidates of ``param_grid`` (``ParameterGrid`` order), keys among GRID_KEYS."""
    grid = ParameterGrid(param_grid)
    grids = grid.param_grid
    unknown = sorted({k for g in grids for k in g} - set(GRID_KEYS))
    if unknown:
        raise ValueError(
            f"param_grid may vary {list(GRID_KEYS)} only, got {unknown}. Set the other "
            f"MLNClassifier parameters on MLNClassifierCV itself, or search them with "
            f"GridSearchCV(MLNClassifier(), ...)."
        )
    return list(grid)


def module_factory(module, kwargs: dict):
    """What skorch builds from ``module`` and its ``module__*`` arguments, as a factory."""
    kwargs = {k.removeprefix("module__"): v for k, v in kwargs.items()}
    if isinstance(module, nn.Module):
        return partial(copy.deepcopy, module) if not kwargs else partial(type(module), **kwargs)
    return partial(module, **kwargs)


def checked_loss(spec, n_classes: int) -> nn.Module:
    loss = resolve_loss(spec)
    loss_spec = getattr(loss, "spec", None)
    if (
        loss_spec is not None
        and loss_spec.structure == "joint"
        and loss_spec.n_classes != n_classes
    ):
        raise ValueError(
            f"meta_loss is a joint meta-loss for {loss_spec.n_classes} classes but y has "
            f"{n_classes}; use a per_class meta-loss for any number of classes."
        )
    return loss


def one_at_a_time(candidates, base, X, y, splits, scorer):
    """``GridSearchCV``'s loop: one MLNClassifier per (candidate, fold)."""
    scores = np.empty((len(candidates), len(splits)))
    fit_time, score_time = np.empty_like(scores), np.empty_like(scores)
    for c, params in enumerate(candidates):
        for f, (train, val) in enumerate(splits):
            tick = time.perf_counter()
            clf = MLNClassifier(**base, **params).fit(X[train], y[train])
            fit_time[c, f] = time.perf_counter() - tick
            tick = time.perf_counter()
            scores[c, f] = (
                clf.score(X[val], y[val]) if scorer is None else scorer(clf, X[val], y[val])
            )
            score_time[c, f] = time.perf_counter() - tick
    return scores, (fit_time, score_time)
