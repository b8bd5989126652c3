"""MLNClassifierCV: MLNClassifier's loss, step size and epochs chosen by cross-validation.

Validates, resolves the folds and the candidates, scores every (candidate, fold) -- as
populations (:mod:`._population`) where MLNClassifier's training is plain full-batch SGD
on a module that batches, else one MLNClassifier at a time -- then refits the best.
"""

from __future__ import annotations

import copy
import time
from numbers import Integral

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context, clone
from sklearn.metrics import check_scoring, get_scorer_names
from sklearn.preprocessing import LabelEncoder
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .._classifier._estimator import _MAX_SEED, MLNClassifier
from .._classifier._routing import RoutedParamsMixin
from .._utils._docstrings import (
    FIT_SECTIONS,
    PREDICT_PROBA_SECTIONS,
    PREDICT_SECTIONS,
    fill_doc,
)
from .._utils._threads import torch_threads
from .._utils._validation import check_random_state, check_sample_shape
from ._candidates import (
    DEFAULT_PARAM_GRID,
    Predicted,
    check_grid,
    checked_loss,
    module_factory,
    one_at_a_time,
)
from ._population import Candidate, can_batch, make_folds, population_probas
from ._splits import resolve_cv, results_table

#: the parameters every candidate's MLNClassifier gets as they are (the grid sets the rest;
#: random_state and verbose are handed on their own way)
_CLASSIFIER_PARAMS = ("module", "momentum", "batch_size", "optimizer", "train_split", "callbacks",
                      "device", "n_threads")  # fmt: skip


class MLNClassifierCV(RoutedParamsMixin, ClassifierMixin, BaseEstimator):
    """MLNClassifier with its loss, learning rate and epochs chosen by cross-validation.

    Every candidate setting of ``param_grid`` is scored on every fold of ``cv``, then the
    best is refit on all the data, as :class:`~sklearn.model_selection.GridSearchCV` with
    an :class:`MLNClassifier` would -- with the same fold scores, to float tolerance -- but
    all (candidate, fold) classifiers of one learning rate train at once as one population,
    and every number of epochs is scored on the way to the largest.

    Parameters
    ----------
    module : None, torch.nn.Module class or instance, or callable, default=None
        The classifier, as :class:`MLNClassifier`'s ``module``.
    param_grid : dict, list of dicts or None, default=None
        The candidates, as ``GridSearchCV``'s ``param_grid`` over ``"meta_loss"``, ``"lr"``
        and ``"max_epochs"`` (a key left out takes :class:`MLNClassifier`'s default).
        ``None`` is the default grid: cross-entropy, label smoothing 0.5 and 0.9
        and the shipped ``"fashion-mnist"`` loss, each at learning rate 0.03 for 50, 100,
        150 or 200 epochs and at 0.1 and 0.3 for 25, 50, 75 or 100 (48 candidates).
    cv : int, cross-validation generator, iterable or None, default=None
        ``None``: a stratified 5-fold, shuffled, repeated until the validation folds hold
        about 100 predictions (at most 3 times). An int: that many stratified folds. Where
        the smallest class has fewer examples than folds, fewer folds (a warning); where
        it has a single one, no search: the fixed default ``MLNClassifier()`` (a warning).
        Anything else is used as ``GridSearchCV`` would use it.
    scoring : str, callable or None, default=None
        A scikit-learn scorer; ``None`` is accuracy (``MLNClassifier.score``).
    refit : bool, default=True
        Refit the best candidate on all the data as ``best_estimator_`` (``predict`` needs
        it).
    momentum, batch_size, optimizer, train_split, callbacks, device, n_threads
        As :class:`MLNClassifier`'s, for every candidate (a population trains at one
        thread with ``n_threads="auto"``). Only full-batch SGD
        (``batch_size=-1``, ``torch.optim.SGD``, no ``train_split``, no callbacks) trains
        as a population; any other training runs one MLNClassifier at a time.
    random_state : int, RandomState instance or None, default=None
        Seeds the folds of the default ``cv`` and the classifiers' initial weights. Every
        classifier gets one ``random_state``: the int given, else one drawn from this (as
        ``GridSearchCV`` hands one ``MLNClassifier(random_state=...)`` to every fit).
    verbose : int, default=0
        ``0`` prints nothing; ``1`` one line about the search; the refit prints skorch's
        log at this verbosity.
    **kwargs
        ``MLNClassifier``'s skorch-routed arguments (``module__hidden_sizes=(32,)``, ...),
        for every candidate. A ``module__*`` argument or ``optimizer__momentum`` keeps the
        population path; any other runs one MLNClassifier at a time.

    Attributes
    ----------
    cv_results_ : dict of numpy (masked) ndarrays
        As ``GridSearchCV``'s: ``params`` (valid MLNClassifier parameters),
        ``param_<name>``, ``split<i>_test_score``, ``mean_test_score``,
        ``std_test_score``, ``rank_test_score`` and fit and score times (for a population,
        its wall time shared among its candidates).
    best_index_ : int
    best_params_ : dict
        The best candidate (``{"meta_loss": "auto"}`` when no search was possible).
    best_score_ : float
        Its mean cross-validated score (nan when no search was possible).
    best_estimator_ : MLNClassifier
        The best candidate refit on all the data (with ``refit=True``).
    n_splits_ : int
        The number of folds (0 when no search was possible).
    cv_ : cross-validation generator or None
        The folds used (pass it to ``GridSearchCV`` for the same search).
    fallback_reason_ : str or None
        Why the candidates were trained one at a time; ``None``: as populations.
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        Names of the features, when ``X`` is a DataFrame with string column names.
    sample_shape_ : tuple of int

    See Also
    --------
    MLNClassifier : The classifier tuned here, with one fixed setting.
    sklearn.model_selection.GridSearchCV : The same search, one fit at a time.

    Notes
    -----
    The population path reproduces ``MLNClassifier.fit`` on each fold: the same initial
    weights, the loss's mean over the fold, ``torch.optim.SGD``'s update with momentum, the
    same probabilities; results differ from one fit at a time by float rounding only
    (batched against single matrix products), so a prediction on the edge between two
    classes may rarely flip. Folds of unequal size are padded with rows of weight 0.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn_mln import MLNClassifierCV
    >>> X, y = load_digits(return_X_y=True)
    >>> grid = {"meta_loss": ["cross_entropy", "label_smoothing(smoothing=0.9)"],
    ...         "lr": [0.03, 0.3], "max_epochs": [50, 100]}
    >>> search = MLNClassifierCV(param_grid=grid, cv=3, random_state=0).fit(X[:150], y[:150])
    >>> sorted(search.best_params_)
    ['lr', 'max_epochs', 'meta_loss']
    >>> len(search.cv_results_["params"])
    8
    >>> search.predict(X[150:155]).shape
    (5,)
    """

    _parameter_constraints: dict = {
        "param_grid": [None, dict, list],
        "cv": ["cv_object"],
        "scoring": [None, StrOptions(set(get_scorer_names())), callable],
        "refit": ["boolean"],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        # handed to every candidate's MLNClassifier: checked as it checks them
        **{k: MLNClassifier._parameter_constraints[k] for k in _CLASSIFIER_PARAMS},
    }

    def __init__(
        self,
        module=None,
        param_grid=None,
        *,
        cv=None,
        scoring=None,
        refit=True,
        momentum=0.9,
        batch_size=-1,
        optimizer=torch.optim.SGD,
        train_split=None,
        callbacks=None,
        device="cpu",
        n_threads="auto",
        random_state=None,
        verbose=0,
        **kwargs,
    ):
        self.module = module
        self.param_grid = param_grid
        self.cv = cv
        self.scoring = scoring
        self.refit = refit
        self.momentum = momentum
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.train_split = train_split
        self.callbacks = callbacks
        self.device = device
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose
        vars(self).update(kwargs)

    # ------------------------------------------------------------------ params
    def __sklearn_clone__(self):
        # the grid is data: a fitted evolver in it must stay fitted (clone would refit it)
        params = self.get_params(deep=False)
        grid = params.pop("param_grid")
        cloned = {k: clone(v, safe=False) for k, v in params.items()}
        return type(self)(param_grid=copy.deepcopy(grid), **cloned)

    def _classifier_params(self) -> dict:
        """What every candidate's MLNClassifier shares (the grid sets the rest)."""
        return {
            **{k: getattr(self, k) for k in _CLASSIFIER_PARAMS},
            **{k: getattr(self, k) for k in self._extra_names()},
        }

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    @fill_doc(fit_sections=FIT_SECTIONS)
    def fit(self, X, y):
        """Score every candidate on every fold, then refit the best on all of ``(X, y)``.

        {fit_sections}
        """
        self._check_extra_names()
        vars(self).pop("best_estimator_", None)  # a refit=False fit leaves none behind
        X, y = validate_data(self, X, y, dtype=np.float32, allow_nd=True)
        X = check_sample_shape(self, X, reset=True)
        check_classification_targets(y)
        self.classes_ = LabelEncoder().fit(y).classes_
        if len(self.classes_) < 2:
            raise ValueError(
                f"{type(self).__name__} needs at least two classes in y; got 1 class: "
                f"{self.classes_.tolist()}."
            )
        candidates = check_grid(DEFAULT_PARAM_GRID if self.param_grid is None else self.param_grid)
        rng = check_random_state(self.random_state)
        given = isinstance(self.random_state, Integral)
        seed = int(self.random_state) if given else int(rng.randint(_MAX_SEED))
        self.cv_ = resolve_cv(self.cv, y, int(rng.randint(_MAX_SEED)))
        base = {**self._classifier_params(), "random_state": seed}
        if self.cv_ is None:
            candidates, scores = [{"meta_loss": "auto"}], np.empty((1, 0))
            times = (np.empty((1, 0)), np.empty((1, 0)))
            self.fallback_reason_ = "no cross-validation: a class has a single example"
            splits = []
        else:
            splits = list(self.cv_.split(X, y))
            scores, times = self._score_candidates(candidates, base, X, y, splits)
        self.n_splits_ = len(splits)
        if self.verbose > 0:
            how = self.fallback_reason_ or "as populations"
            print(f"Fitting {len(splits)} folds for each of {len(candidates)} candidates ({how})")
        self.cv_results_ = results_table(candidates, scores, times)
        self.best_index_ = int(self.cv_results_["rank_test_score"].argmin())
        self.best_params_ = candidates[self.best_index_]
        self.best_score_ = float(self.cv_results_["mean_test_score"][self.best_index_])
        if self.refit:
            self.best_estimator_ = MLNClassifier(**base, **self.best_params_, verbose=self.verbose)
            self.best_estimator_.fit(X, y)
        return self

    def _score_candidates(self, candidates, base, X, y, splits):
        """Scores ``(n_candidates, n_splits)`` and fit and score times of the same shape."""
        scorer = None if self.scoring is None else check_scoring(MLNClassifier(), self.scoring)
        encoded = np.searchsorted(self.classes_, y)
        self.fallback_reason_ = self._fallback_reason(encoded, splits)
        template = MLNClassifier(**base)
        template.sample_shape_, template.n_features_in_ = self.sample_shape_, self.n_features_in_
        if self.fallback_reason_ is None:
            module, kwargs = template._module_and_kwargs(len(self.classes_))
            factory = module_factory(module, kwargs)
            folds = make_folds(X, encoded, splits, str(self.device))
            init_seed = int(check_random_state(base["random_state"]).randint(_MAX_SEED))
            if can_batch(factory, folds, init_seed):
                return self._population_scores(
                    candidates, template, factory, folds, init_seed, X, y, splits, scorer
                )
            self.fallback_reason_ = "the module does not run in population form"
        return one_at_a_time(candidates, base, X, y, splits, scorer)

    def _fallback_reason(self, encoded: np.ndarray, splits) -> str | None:
        """Why MLNClassifier's training on these folds is not plain full-batch SGD."""
        routed = [k for k in self._extra_names()
                  if not k.startswith("module__") and k != "optimizer__momentum"]  # fmt: skip
        if self.batch_size != -1:
            return "mini-batches (batch_size != -1)"
        if self.optimizer is not torch.optim.SGD:
            return "an optimizer other than torch.optim.SGD"
        if self.train_split is not None or self.callbacks not in (None, "disable"):
            return "a train_split or callbacks"
        if routed:
            return f"routed arguments {routed}"
        n_classes = len(self.classes_)
        if any(len(np.unique(encoded[train])) < n_classes for train, _ in splits):
            return "a training fold without every class"
        return None

    def _population_scores(self, candidates, template, factory, folds, seed, X, y, splits, scorer):
        resolved, losses = [], {}
        for params in candidates:
            setting = MLNClassifier(**{**template.get_params(), **params})._training_setting(X)
            spec, lr, steps = setting
            key = spec if isinstance(spec, str) else id(spec)
            if key not in losses:
                losses[key] = checked_loss(spec, len(self.classes_))
            resolved.append(Candidate(key, losses[key], lr, steps))
        momentum = float(getattr(self, "optimizer__momentum", self.momentum))
        threads = 1 if self.n_threads == "auto" else self.n_threads
        with torch.random.fork_rng(devices=[]), torch_threads(threads):
            probas, seconds = population_probas(
                resolved, factory, folds, seed=seed, momentum=momentum, device=str(self.device)
            )
        scores = np.empty((len(candidates), len(splits)))
        score_time = np.empty_like(scores)
        for (c, f), proba in probas.items():
            tick = time.perf_counter()
            val = splits[f][1]
            if scorer is None:  # MLNClassifier.score: accuracy_score's mean of hits
                scores[c, f] = np.mean(self.classes_[np.argmax(proba, axis=1)] == y[val])
            else:
                scores[c, f] = scorer(Predicted(self.classes_, proba), X[val], y[val])
            score_time[c, f] = time.perf_counter() - tick
        fit_time = np.repeat(seconds[:, None] / len(splits), len(splits), axis=1)
        return scores, (fit_time, score_time)

    # ------------------------------------------------------------------ predict
    def _fitted_best(self) -> MLNClassifier:
        check_is_fitted(self)
        if not hasattr(self, "best_estimator_"):
            raise AttributeError(
                f"This {type(self).__name__} was fitted with refit=False: it has no "
                f"best_estimator_ to predict with."
            )
        return self.best_estimator_

    def _checked(self, X) -> np.ndarray:
        X = validate_data(self, X, dtype=np.float32, allow_nd=True, ensure_2d=False, reset=False)
        return check_sample_shape(self, X, reset=False)

    @fill_doc(predict_proba_sections=PREDICT_PROBA_SECTIONS)
    def predict_proba(self, X):
        """Class probabilities of the best estimator.

        {predict_proba_sections}
        """
        best = self._fitted_best()
        return best.predict_proba(self._checked(X))

    @fill_doc(predict_sections=PREDICT_SECTIONS)
    def predict(self, X):
        """Class labels predicted by the best estimator.

        {predict_sections}
        """
        best = self._fitted_best()
        return best.predict(self._checked(X))
