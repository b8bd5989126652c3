"""MLNClassifierCV: scikit-learn's conventions, GridSearchCV's fold scores from one population
pass, small classes, and the one-at-a-time fallback."""

import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_mln import MLP, MetaLossNetwork, MLNClassifier, MLNClassifierCV

#: a grid small enough for the common checks and fast tests
GRID = {"meta_loss": ["cross_entropy"], "lr": [0.1, 0.3], "max_epochs": [10, 20]}
#: classical losses with a hyperparameter, the shipped learned loss, two step sizes, and
#: epochs scored on the way
MIXED_GRID = {
    "meta_loss": ["cross_entropy", "label_smoothing(smoothing=0.9)", "fashion-mnist"],
    "lr": [0.03, 0.3],
    "max_epochs": [10, 30],
}
#: a list of grids, as the default grid is: other epochs at another step size
LISTED_GRID = [
    {**MIXED_GRID, "lr": [0.03]},
    {"meta_loss": ["label_smoothing(smoothing=0.9)", "cross_entropy"], "lr": [0.3],
     "max_epochs": [5, 15]},
]  # fmt: skip


@parametrize_with_checks(
    [MLNClassifierCV(param_grid=GRID, random_state=0)],
    expected_failed_checks=lambda est: {},
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def small(digits):
    """103 digits (folds of unequal size), flat and as images."""
    X, y = digits
    return X[:103], X[:103].reshape(103, -1), y[:103]


def _both(grid, X, y, cv, scoring=None, **params):
    ours = MLNClassifierCV(param_grid=grid, cv=cv, scoring=scoring, random_state=0, **params)
    theirs = GridSearchCV(MLNClassifier(random_state=0, **params), grid, cv=cv, scoring=scoring)
    return ours.fit(X, y), theirs.fit(X, y)


def _assert_same_search(ours, theirs, atol=1e-6):
    assert list(ours.cv_results_) == list(theirs.cv_results_)  # the same keys, in order
    assert ours.cv_results_["params"] == theirs.cv_results_["params"]
    for key, value in theirs.cv_results_.items():
        if "test_score" in key and not key.startswith("rank"):
            np.testing.assert_allclose(ours.cv_results_[key], value, rtol=0, atol=atol)
    assert ours.best_params_ == theirs.best_params_
    assert ours.best_index_ == theirs.best_index_


# ----------------------------------------------------------------------------- GridSearchCV
@pytest.mark.parametrize("layout", ["flat", "images"])
def test_fold_scores_are_grid_search_cvs(small, layout, one_torch_thread):
    """The population pass reproduces GridSearchCV(MLNClassifier()) fold by fold."""
    images, flat, y = small
    X = flat if layout == "flat" else images
    grid = LISTED_GRID if layout == "flat" else {**MIXED_GRID, "meta_loss": ["cross_entropy"]}
    cv = StratifiedKFold(4, shuffle=True, random_state=0)  # 103 rows: folds of 25 and 26
    ours, theirs = _both(grid, X, y, cv)
    assert ours.fallback_reason_ is None
    _assert_same_search(ours, theirs)
    assert ours.n_splits_ == theirs.n_splits_ == 4
    # the refit is the best candidate's MLNClassifier on all the data
    np.testing.assert_allclose(
        ours.predict_proba(X[:50]), theirs.predict_proba(X[:50]), rtol=0, atol=1e-6
    )
    # the candidates are valid MLNClassifier parameters
    MLNClassifier().set_params(**ours.cv_results_["params"][-1])


def test_probabilities_match_to_float_tolerance(small, one_torch_thread):
    _, X, y = small
    ours, theirs = _both(MIXED_GRID, X, y, 3, scoring="neg_log_loss")
    _assert_same_search(ours, theirs, atol=1e-5)


@pytest.mark.parametrize("flag", ["progress_input", "shots_input"])
def test_input_meta_losses_see_what_mlnclassifier_tells_them(small, flag, one_torch_thread):
    """A progress-input loss trains once per epoch count; a shots-input one sees its fold."""
    _, X, y = small
    loss = MetaLossNetwork(10, anchor=None, random_state=0, **{flag: True})
    grid = {"meta_loss": [loss, "cross_entropy"], "lr": [0.1], "max_epochs": [5, 15]}
    ours, theirs = _both(grid, X, y, StratifiedKFold(4, shuffle=True, random_state=1))
    assert ours.fallback_reason_ is None
    _assert_same_search(ours, theirs)


def test_routed_module_arguments_and_momentum_keep_the_population(small, one_torch_thread):
    _, X, y = small
    params = {"module__hidden_sizes": (16,), "optimizer__momentum": 0.5}
    ours, theirs = _both(GRID, X, y, 3, **params)
    assert ours.fallback_reason_ is None
    _assert_same_search(ours, theirs)


# ----------------------------------------------------------------------------- fallback
class UnbatchableMLP(MLP):
    """The MLP with data-dependent control flow, which torch.func.vmap cannot batch."""

    def forward(self, X):
        if bool(torch.isfinite(X).all()):
            return super().forward(X)
        return super().forward(torch.nan_to_num(X))


def test_a_module_that_cannot_batch_trains_one_at_a_time(small, one_torch_thread):
    _, X, y = small
    cv = StratifiedKFold(4, shuffle=True, random_state=0)
    fallback, theirs = _both(GRID, X, y, cv, module=UnbatchableMLP)
    assert fallback.fallback_reason_ == "the module does not run in population form"
    _assert_same_search(fallback, theirs, atol=0)
    # the same weights as the population path's MLP, the same results
    population = MLNClassifierCV(param_grid=GRID, cv=cv, random_state=0).fit(X, y)
    assert population.fallback_reason_ is None
    _assert_same_search(fallback, population)


@pytest.mark.parametrize(
    "params, reason",
    [
        ({"batch_size": 32}, "mini-batches"),
        ({"optimizer": torch.optim.Adam}, "optimizer"),
        ({"optimizer__weight_decay": 1e-3}, "routed arguments"),
    ],
)
def test_training_other_than_full_batch_sgd_falls_back(small, params, reason):
    _, X, y = small
    grid = {"meta_loss": ["cross_entropy"], "lr": [0.1], "max_epochs": [3]}
    search = MLNClassifierCV(param_grid=grid, cv=2, random_state=0, **params).fit(X, y)
    assert reason in search.fallback_reason_
    assert search.cv_results_["split1_test_score"].shape == (1,)


# ----------------------------------------------------------------------------- small classes
def test_fewer_examples_in_a_class_than_folds_warns_and_uses_fewer_folds(small):
    _, X, y = small
    keep = np.r_[np.flatnonzero(y != 3), np.flatnonzero(y == 3)[:3]]
    with pytest.warns(UserWarning, match="only 3 examples, fewer than the 5 folds"):
        search = MLNClassifierCV(param_grid=GRID, random_state=0).fit(X[keep], y[keep])
    assert search.cv_.get_n_splits() == search.n_splits_
    assert search.n_splits_ % 3 == 0 and search.fallback_reason_ is None
    assert np.isfinite(search.best_score_)


def test_a_class_with_one_example_falls_back_to_the_fixed_default(small):
    _, X, y = small
    keep = np.r_[np.flatnonzero(y != 3), np.flatnonzero(y == 3)[:1]]
    with pytest.warns(UserWarning, match="single example.*fixed default"):
        search = MLNClassifierCV(param_grid=GRID, random_state=0).fit(X[keep], y[keep])
    assert search.best_params_ == {"meta_loss": "auto"} and np.isnan(search.best_score_)
    assert search.n_splits_ == 0 and search.cv_ is None
    default = MLNClassifier(random_state=0).fit(X[keep], y[keep])
    np.testing.assert_array_equal(search.predict(X), default.predict(X))


def test_the_default_cv_repeats_on_small_data(small):
    _, X, y = small
    rows = np.concatenate([np.flatnonzero(y == c)[:6] for c in range(10)])  # 6 a class
    search = MLNClassifierCV(param_grid=GRID, random_state=0).fit(X[rows], y[rows])
    assert search.n_splits_ == 5 * 2  # 60 rows: ceil(100 / 60) = 2 repeats
    # an int is GridSearchCV's StratifiedKFold
    assert MLNClassifierCV(param_grid=GRID, cv=5).fit(X[rows], y[rows]).n_splits_ == 5
    assert MLNClassifierCV(param_grid=GRID).fit(X, y).n_splits_ == 5  # 103 rows


# ----------------------------------------------------------------------------- conventions
def test_default_grid(small, one_torch_thread):
    _, X, y = small
    rows = np.concatenate([np.flatnonzero(y == c)[:6] for c in range(10)])
    search = MLNClassifierCV(random_state=0).fit(X[rows], y[rows])
    assert len(search.cv_results_["params"]) == 48 and search.fallback_reason_ is None
    assert {"meta_loss", "lr", "max_epochs"} == set(search.best_params_)
    assert search.best_estimator_.max_epochs_ == search.best_params_["max_epochs"]


def test_pipeline_pickle_and_clone(small):
    _, X, y = small
    pipe = make_pipeline(StandardScaler(), MLNClassifierCV(param_grid=GRID, cv=2, random_state=0))
    pipe.fit(X, y)
    restored = pickle.loads(pickle.dumps(pipe))
    np.testing.assert_array_equal(restored.predict(X), pipe.predict(X))
    search = MLNClassifierCV(param_grid=GRID, module__hidden_sizes=(8,), random_state=0)
    assert clone(search).get_params()["module__hidden_sizes"] == (8,)
    assert clone(search).set_params(module__hidden_sizes=(4,)).module__hidden_sizes == (4,)


def test_refit_false_keeps_the_search_but_does_not_predict(small):
    _, X, y = small
    search = MLNClassifierCV(param_grid=GRID, cv=2, refit=False, random_state=0).fit(X, y)
    assert not hasattr(search, "best_estimator_") and search.best_params_
    with pytest.raises(AttributeError, match="refit=False"):
        search.predict(X)


def test_reproducible_silent_and_no_global_rng_moved(small, capsys):
    _, X, y = small
    np_state, torch_state = np.random.get_state()[1].copy(), torch.random.get_rng_state()
    a = MLNClassifierCV(param_grid=GRID, random_state=0).fit(X, y)
    b = MLNClassifierCV(param_grid=GRID, random_state=0).fit(X, y)
    MLNClassifierCV(param_grid=GRID, cv=2).fit(X, y)  # random_state=None works
    np.testing.assert_array_equal(
        a.cv_results_["mean_test_score"], b.cv_results_["mean_test_score"]
    )
    np.testing.assert_array_equal(np.random.get_state()[1], np_state)
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert capsys.readouterr().out == ""
    MLNClassifierCV(param_grid=GRID, cv=2, verbose=1, callbacks="disable").fit(X, y)
    assert "Fitting 2 folds for each of 4 candidates" in capsys.readouterr().out


@pytest.mark.parametrize(
    "params, match",
    [
        ({"param_grid": {"momentum": [0.5]}}, r"may vary \['meta_loss', 'lr', 'max_epochs'\]"),
        ({"param_grid": {"meta_loss": ["nonsense"]}}, "meta_loss='nonsense' is neither"),
        ({"cv": "five"}, "'cv' parameter of MLNClassifierCV must be"),
        ({"hidden_sizes": (3,)}, "did you mean|unexpected argument"),
    ],
)
def test_bad_parameters_raise_in_fit(small, params, match):
    _, X, y = small
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises((ValueError, TypeError), match=match):
            MLNClassifierCV(**params).fit(X, y)
