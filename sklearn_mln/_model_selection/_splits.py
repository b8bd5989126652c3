"""The folds of a search and its results table, shaped like ``GridSearchCV``'s.

:func:`resolve_cv` turns ``cv`` into a splitter: by default a stratified 5-fold, repeated
on small data, with fewer folds (and a warning) where a class has fewer examples than
folds, and none (and a warning) where a class has a single example. :func:`results_table`
writes ``cv_results_`` the way :class:`~sklearn.model_selection.GridSearchCV` does.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from numbers import Integral

import numpy as np
from scipy.stats import rankdata
from sklearn.model_selection import RepeatedStratifiedKFold, StratifiedKFold, check_cv

#: folds of the default ``cv``
N_SPLITS = 5
#: on small data the default folds are repeated until the validation folds hold about this
#: many predictions in all (at most :data:`MAX_REPEATS` times): 5 examples of each of 10
#: classes are 50 predictions, too few to tell settings apart; twice as many is the
#: most the default grid affords within 20 times one MLNClassifier fit
MIN_VALIDATION_PREDICTIONS = 100
MAX_REPEATS = 3


def resolve_cv(cv, y: np.ndarray, seed: int):
    """The splitter ``cv`` means for labels ``y``, or ``None``: no split is possible.

    ``None``: a stratified 5-fold shuffled with ``seed``, repeated on small data. An int
    ``k``: ``GridSearchCV``'s ``StratifiedKFold(k)``. Where the least populated class has
    fewer examples than folds, that many folds (at least 2) with a warning; a class with a
    single example leaves nothing to cross-validate (``None``, with a warning). Any other
    ``cv`` is scikit-learn's (``check_cv``), used as it is.
    """
    if cv is not None and not isinstance(cv, Integral):
        return check_cv(cv, y, classifier=True)
    n_splits = N_SPLITS if cv is None else int(cv)
    smallest = int(np.unique(y, return_counts=True)[1].min())
    if smallest < n_splits:
        if smallest < 2:
            warnings.warn(
                "The least populated class in y has a single example, too few for any "
                "stratified cross-validation: no candidate is scored and the best "
                "estimator is MLNClassifier's fixed default (meta_loss='auto'). Give every "
                "class at least 2 examples to tune.",
                UserWarning,
                stacklevel=4,
            )
            return None
        warnings.warn(
            f"The least populated class in y has only {smallest} examples, fewer than the "
            f"{n_splits} folds of cv: cross-validating with {smallest} stratified folds "
            f"instead.",
            UserWarning,
            stacklevel=4,
        )
        n_splits = smallest
    if cv is not None:
        return StratifiedKFold(n_splits)
    repeats = min(MAX_REPEATS, math.ceil(MIN_VALIDATION_PREDICTIONS / len(y)))
    return RepeatedStratifiedKFold(n_splits=n_splits, n_repeats=repeats, random_state=seed)


def results_table(
    candidates: Sequence[dict],
    scores: np.ndarray,
    times: tuple[np.ndarray, np.ndarray],
) -> dict:
    """``cv_results_`` of ``GridSearchCV`` from ``(n_candidates, n_splits)`` scores and
    (fit, score) times."""
    fit_time, score_time = times
    n = len(candidates)
    results: dict = {}
    for name, times in (("fit_time", fit_time), ("score_time", score_time)):
        empty = np.full(n, np.nan)
        results[f"mean_{name}"] = times.mean(axis=1) if times.size else empty
        results[f"std_{name}"] = times.std(axis=1) if times.size else empty.copy()
    for key in sorted({k for params in candidates for k in params}):
        column = np.ma.MaskedArray(np.empty(n, dtype=object), mask=True)
        for i, params in enumerate(candidates):
            if key in params:
                column[i] = params[key]
        results[f"param_{key}"] = column
    results["params"] = list(candidates)
    for split in range(scores.shape[1]):
        results[f"split{split}_test_score"] = scores[:, split]
    if scores.shape[1]:  # as GridSearchCV: a candidate with a nan score has a nan mean
        means = scores.mean(axis=1)
        results["mean_test_score"] = means
        results["std_test_score"] = np.sqrt(((scores - means[:, None]) ** 2).mean(axis=1))
    else:
        means = results["mean_test_score"] = np.full(n, np.nan)
        results["std_test_score"] = np.full(n, np.nan)
    if np.isnan(means).all():
        rank = np.ones(n, dtype=np.int32)
    else:  # GridSearchCV's: nan ranks last, ties share the best rank
        filled = np.nan_to_num(means, nan=np.nanmin(means) - 1)
        rank = np.asarray(rankdata(-filled, method="min"), dtype=np.int32)
    results["rank_test_score"] = rank
    return results
