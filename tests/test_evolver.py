import os
import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_mln import MetaLossNetwork, MLNEvolver, load_meta_loss
from sklearn_mln._evolution._state import start_point
from sklearn_mln._evolution._strategy import DIAGONAL_THRESHOLD, CMAStrategy
from sklearn_mln._losses._meta_loss import MetaLossSpec


@pytest.fixture(scope="module")
def tiny(tiny_evolver):
    """The tiny settings of tests/conftest.py at inner_lr=0.1, seeded by each test."""
    return {**{k: v for k, v in tiny_evolver.items() if k != "random_state"}, "inner_lr": 0.1}


@pytest.fixture(scope="module")
def fitted(tiny, digits_flat):
    X, y = digits_flat
    return MLNEvolver(**tiny, random_state=0).fit(X[:300], y[:300])


def _history_without_time(evo):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in evo.history_]


def test_user_story(tiny, fitted, digits_flat):
    from sklearn_mln import MLNClassifier

    X, y = digits_flat
    evo = fitted
    assert isinstance(evo.meta_loss_, MetaLossNetwork)
    assert not any(p.requires_grad for p in evo.meta_loss_.parameters())
    assert len(evo.history_) == tiny["n_generations"] == evo.n_generations_
    assert set(evo.history_[0]) == {
        "generation",
        "best_fitness",
        "mean_fitness",
        "median_fitness",
        "sigma",
        "seconds",
        "n_failures",
    }
    for h in evo.history_:
        assert 0 <= h["mean_fitness"] <= h["best_fitness"] <= 1
    score = evo.score(X[300:600], y[300:600])
    assert 0.3 < score <= 1.0  # 3-shot digits_flat classifiers, far above chance (0.1)
    clf = MLNClassifier(meta_loss=evo, max_epochs=20, lr=0.1, random_state=0).fit(X[:50], y[:50])
    assert clf.score(X[600:], y[600:]) > 0.3
    assert evo.meta_loss_.metadata["evolved_by"] == "MLNEvolver"


def test_random_state_reproduces_bit_for_bit(fitted, digits_flat):
    X, y = digits_flat
    again = clone(fitted).fit(X[:300], y[:300])
    np.testing.assert_array_equal(
        again.meta_loss_.get_flat_params(), fitted.meta_loss_.get_flat_params()
    )
    assert _history_without_time(again) == _history_without_time(fitted)
    assert again.score(X[300:600], y[300:600]) == fitted.score(X[300:600], y[300:600])


def test_different_seed_differs(fitted, digits_flat):
    X, y = digits_flat
    other = clone(fitted).set_params(random_state=1).fit(X[:300], y[:300])
    assert _history_without_time(other) != _history_without_time(fitted)


def test_n_jobs_1_and_2_identical(tiny, digits_flat):
    X, y = digits_flat
    one = MLNEvolver(**tiny, n_jobs=1, random_state=3).fit(X[:300], y[:300])
    two = MLNEvolver(**tiny, n_jobs=2, random_state=3).fit(X[:300], y[:300])
    np.testing.assert_array_equal(
        one.meta_loss_.get_flat_params(), two.meta_loss_.get_flat_params()
    )
    assert _history_without_time(one) == _history_without_time(two)


def test_silent_no_files(tiny, tmp_path, monkeypatch, capsys, digits_flat):
    # the global random generators: tests/test_reproducibility.py
    X, y = digits_flat
    monkeypatch.chdir(tmp_path)
    MLNEvolver(**tiny, random_state=0, verbose=0).fit(X[:300], y[:300])
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    assert os.listdir(tmp_path) == []  # pycma's outcmaes/ would appear here


def test_verbose_shows_progress(tiny, capsys, digits_flat):
    X, y = digits_flat
    MLNEvolver(**tiny, random_state=0, verbose=1).fit(X[:300], y[:300])
    err = capsys.readouterr().err
    assert "evolving" in err and "best=" in err and "sigma=" in err


def test_cma_seed_and_diagonal_switch():
    with pytest.raises(ValueError, match="seed 0"):
        CMAStrategy(np.zeros(3), 0.1, 4, seed=0)
    small = CMAStrategy(np.zeros(DIAGONAL_THRESHOLD), 0.1, 4, seed=1)
    large = CMAStrategy(np.zeros(DIAGONAL_THRESHOLD + 1), 0.1, 4, seed=1)
    assert not small.diagonal and large.diagonal
    assert large.es.opts["CMA_diagonal"] is True
    a = CMAStrategy(np.zeros(5), 0.1, 4, seed=7).ask()
    np.random.seed(123)  # the caller's global generator must not influence pycma
    b = CMAStrategy(np.zeros(5), 0.1, 4, seed=7).ask()
    np.testing.assert_array_equal(a, b)


def test_joint_structure_uses_separable_cma_above_threshold(tiny, digits_flat):
    X, y = digits_flat
    evo = MLNEvolver(
        **{**tiny, "n_generations": 1, "hidden_sizes": (12,)}, structure="joint", random_state=0
    ).fit(X[:300], y[:300])
    assert evo.meta_loss_.n_params == 2 + 20 * 12 + 12 + 12 + 1 > DIAGONAL_THRESHOLD
    assert evo.meta_loss_.spec.structure == "joint"


def test_bad_candidates_get_worst_fitness_without_crashing(tiny, digits_flat):
    X, y = digits_flat
    evo = MLNEvolver(
        **{**tiny, "n_generations": 3}, init="random", anchor=None, sigma0=20.0, random_state=0
    ).fit(X[:300], y[:300])
    failures = sum(h["n_failures"] for h in evo.history_)
    assert failures > 0
    assert all(np.isfinite(h["best_fitness"]) for h in evo.history_)


def test_max_time_stops_early(tiny, digits_flat):
    X, y = digits_flat
    evo = MLNEvolver(**{**tiny, "n_generations": 50}, max_time=1e-6, random_state=0)
    evo.fit(X[:300], y[:300])
    assert evo.stop_reason_ == "max_time" and len(evo.history_) == 1


def test_meta_loss_is_chosen_by_reevaluation(fitted):
    re = fitted.reevaluation_
    assert re["labels"][0] == "start" and len(re["labels"]) == len(re["fitness"])
    assert fitted.best_fitness_ == max(re["fitness"])
    assert re["chosen"] == re["labels"][int(np.argmax(re["fitness"]))]


def test_label_smoothing_start_and_warm_start(tiny, digits_flat):
    X, y = digits_flat
    evo = MLNEvolver(**{**tiny, "n_generations": 1}, init="label_smoothing", random_state=0)
    evo.fit(X[:300], y[:300])
    warm = MLNEvolver(**{**tiny, "n_generations": 1}, init=evo.meta_loss_, random_state=0)
    warm.fit(X[:300], y[:300])
    assert warm.meta_loss_.spec == evo.meta_loss_.spec


@pytest.mark.parametrize("smoothing", [0.1, 0.9])
def test_parameterised_label_smoothing_start_is_that_loss(smoothing):
    spec = MetaLossSpec(n_classes=10, hidden_sizes=(4,))
    start_spec, theta = start_point(
        f"label_smoothing(smoothing={smoothing})", spec, np.random.RandomState(0)
    )
    network = MetaLossNetwork.from_spec(start_spec, theta)
    logits, y = (
        torch.randn(32, 10, generator=torch.Generator().manual_seed(0)),
        torch.arange(32) % 10,
    )
    expected = torch.nn.functional.cross_entropy(logits, y, label_smoothing=smoothing)
    torch.testing.assert_close(network(logits, y).float(), expected)


def test_named_and_parameterised_default_smoothing_start_run_identically(tiny, digits_flat):
    X, y = digits_flat
    runs = [
        MLNEvolver(**{**tiny, "n_generations": 2}, init=init, random_state=0).fit(X[:300], y[:300])
        for init in ("label_smoothing", "label_smoothing(smoothing=0.1)")
    ]
    strip = [[{k: v for k, v in h.items() if k != "seconds"} for h in r.history_] for r in runs]
    assert strip[0] == strip[1]
    np.testing.assert_array_equal(
        runs[0].meta_loss_.get_flat_params(), runs[1].meta_loss_.get_flat_params()
    )


@pytest.mark.parametrize("init", ["focal(gamma=2)", "label_smoothing(eps=0.2)", "smooth"])
def test_unknown_start_is_rejected_with_the_accepted_forms(tiny, digits_flat, init):
    X, y = digits_flat
    with pytest.raises(ValueError, match="label_smoothing\\(smoothing=EPS\\)"):
        MLNEvolver(**tiny, init=init, random_state=0).fit(X[:300], y[:300])


@pytest.mark.parametrize(
    "X_y, match",
    [
        (lambda X, y: (X[:40], y[:40]), "at least n_shots"),
        (lambda X, y: (X[:100], np.zeros(100)), "at least 2 classes"),
        (
            lambda X, y: (
                np.where(np.arange(X[:300].size).reshape(300, -1) == 5, np.nan, X[:300]),
                y[:300],
            ),
            "NaN",
        ),
        (lambda X, y: (X[:300].reshape(300, 8, 8), y[:300]), "2-D .* or 4-D"),
        (lambda X, y: (X[:300], y[:299]), "inconsistent"),
    ],
)
def test_bad_input_is_rejected_before_work(tiny, digits_flat, X_y, match):
    X, y = digits_flat
    with pytest.raises(ValueError, match=match):
        MLNEvolver(**{**tiny, "n_shots": 5}).fit(*X_y(X, y))


def test_score_rejects_unseen_labels(fitted, digits_flat):
    X, y = digits_flat
    with pytest.raises(ValueError, match="unseen"):
        fitted.score(X[300:600], y[300:600] + 100)


def test_pickle_fitted(fitted, digits_flat):
    X, y = digits_flat
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(
        restored.meta_loss_.get_flat_params(), fitted.meta_loss_.get_flat_params()
    )
    assert restored.score(X[300:600], y[300:600]) == fitted.score(X[300:600], y[300:600])


class _BatchNormNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(64, 10)
        self.bn = torch.nn.BatchNorm1d(10)

    def forward(self, X):
        return self.bn(self.fc(X.flatten(1)))


def test_unbatchable_module_falls_back_with_a_warning(tiny, capsys, digits_flat):
    X, y = digits_flat
    evo = MLNEvolver(**{**tiny, "n_generations": 1}, module=_BatchNormNet, random_state=0)
    with pytest.warns(UserWarning, match="_BatchNormNet cannot be batched"):
        evo.fit(X[:300], y[:300])  # verbose=0: the slowdown is announced all the same
    assert capsys.readouterr() == ("", "")
    assert evo.history_[0]["best_fitness"] > 0.2
    with pytest.warns(UserWarning, match="cannot be batched"):
        evo.score(X[300:600], y[300:600])


def test_explicit_one_at_a_time_loop_does_not_warn(tiny, digits_flat, recwarn):
    X, y = digits_flat
    MLNEvolver(**{**tiny, "n_generations": 1}, vectorized=False, random_state=0).fit(
        X[:300], y[:300]
    )
    assert not [w for w in recwarn if "cannot be batched" in str(w.message)]


def test_images_use_the_cnn(tiny, digits):
    X, y = digits
    cnn = {**tiny, "n_generations": 1, "inner_steps": 50, "inner_lr": 0.05}
    evo = MLNEvolver(**cnn, random_state=0).fit(X[:300], y[:300])
    assert evo.n_features_in_ == 64 and evo.sample_shape_ == (1, 8, 8)
    assert evo.score(X[300:600], y[300:600]) > 0.2


@parametrize_with_checks(
    [
        MLNEvolver(
            n_shots=1,
            n_tasks=1,
            popsize=2,
            n_generations=1,
            inner_steps=2,
            n_reeval_tasks=1,
            hidden_sizes=(2,),
            random_state=0,
        )
    ],
    expected_failed_checks=lambda est: {},
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_fitted_evolver_survives_clone_and_grid_search(fitted, digits_flat):
    from sklearn.model_selection import GridSearchCV

    from sklearn_mln import MLNClassifier

    X, y = digits_flat
    clf = MLNClassifier(meta_loss=fitted, max_epochs=10, lr=0.1, random_state=0)
    assert clone(clf).meta_loss is fitted
    search = GridSearchCV(clf, {"lr": [0.05, 0.1]}, cv=2).fit(X[:100], y[:100])
    np.testing.assert_array_equal(
        search.best_estimator_.loss_.get_flat_params(), fitted.meta_loss_.get_flat_params()
    )


def test_true_class_input_network_is_evolved_from_a_tuned_start(tiny, digits_flat, tmp_path):
    X, y = digits_flat
    evo = MLNEvolver(
        **tiny, true_class_input=True, init="label_smoothing(smoothing=0.5)", random_state=0
    ).fit(X[:300], y[:300])
    spec = evo.meta_loss_.spec
    assert spec.true_class_input and spec.n_params == 2 + (3 * 4 + 4) + (4 + 1)
    evo.meta_loss_.save(tmp_path / "loss.mln")
    assert load_meta_loss(tmp_path / "loss.mln").spec == spec
    with pytest.raises(ValueError, match="already sees"):
        MLNEvolver(**tiny, true_class_input=True, structure="joint").fit(X[:300], y[:300])


def test_progress_input_network_is_evolved(tiny, digits_flat):
    X, y = digits_flat
    evo = MLNEvolver(**tiny, progress_input=True, random_state=0).fit(X[:300], y[:300])
    spec = evo.meta_loss_.spec
    assert spec.progress_input and spec.n_params == 2 + (3 * 4 + 4) + (4 + 1)
