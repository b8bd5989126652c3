import copy
import os
import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks
from skorch.callbacks import EpochScoring
from skorch.dataset import ValidSplit

from sklearn_mln import MLP, ClassicalLoss, MetaLossNetwork, MLNClassifier, SmallCNN
from sklearn_mln._evolution._inner import train_reference


@parametrize_with_checks(
    [MLNClassifier(max_epochs=20, random_state=0)],
    expected_failed_checks=lambda est: {},
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


# --------------------------------------------------------------------------- user story
@pytest.mark.parametrize("layout, max_epochs", [("flat", 50), ("images", 100)])
def test_user_story(digits, layout, max_epochs):
    X, y = digits
    if layout == "flat":
        X = X.reshape(len(X), -1)
    clf = MLNClassifier(meta_loss="cross_entropy", max_epochs=max_epochs, random_state=0)
    assert clf.fit(X[:100], y[:100]) is clf
    pred = clf.predict(X[100:])
    proba = clf.predict_proba(X[100:])
    assert pred.shape == (len(X) - 100,)
    assert proba.shape == (len(X) - 100, 10) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(pred, clf.classes_[proba.argmax(axis=1)])
    assert clf.score(X[100:], y[100:]) > 0.6
    assert isinstance(clf.module_, MLP if layout == "flat" else SmallCNN)


@pytest.mark.parametrize("shape, name", [((1, 8, 8), "cnn"), ((64,), "mlp")])
def test_default_classifier_is_an_architecture_of_the_table(shape, name):
    from sklearn_mln._classifier._nets import architecture_factory, default_module_factory

    with torch.random.fork_rng():
        torch.manual_seed(0)
        default = default_module_factory(shape, 10)()
        torch.manual_seed(0)
        named = architecture_factory(name, shape, 10)()
    assert repr(default) == repr(named)
    for a, b in zip(default.parameters(), named.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_training_is_the_reference_loop(digits_flat):
    """skorch's loop with a module instance is plain full-batch SGD with momentum."""
    X, y = digits_flat
    module = MLP(64, 10, hidden_sizes=(16,))
    before = copy.deepcopy(module.state_dict())
    clf = MLNClassifier(module, "cross_entropy", max_epochs=15, lr=0.05, momentum=0.8).fit(
        X[:80], y[:80]
    )
    reference = copy.deepcopy(module)
    train_reference(
        reference,
        torch.as_tensor(X[:80]),
        torch.as_tensor(y[:80]),
        ClassicalLoss(),
        lr=0.05,
        steps=15,
        momentum=0.8,
    )
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(clf.module_.state_dict()[name], value)
    # the module passed as a parameter is copied, never trained in place
    for name, value in module.state_dict().items():
        assert torch.equal(value, before[name])
    assert clf.module_ is not module


# --------------------------------------------------------------------------- inputs and labels
def test_string_labels(digits_flat):
    X, y = digits_flat
    names = np.array([f"digit-{i}" for i in range(10)])  # sorts like 0..9: same encoding
    clf = MLNClassifier(max_epochs=20, random_state=0).fit(X[:100], names[y[:100]])
    ref = MLNClassifier(max_epochs=20, random_state=0).fit(X[:100], y[:100])
    np.testing.assert_array_equal(clf.classes_, np.sort(names))
    pred = clf.predict(X[100:300])
    assert set(pred) <= set(names)
    np.testing.assert_array_equal(pred, names[ref.predict(X[100:300])])
    assert clf.score(X[100:300], names[y[100:300]]) == ref.score(X[100:300], y[100:300])


def test_two_and_four_dimensional_inputs(digits, digits_flat):
    X4, y = digits
    X2, _ = digits_flat
    clf4 = MLNClassifier(max_epochs=3, random_state=0).fit(X4[:60], y[:60])
    clf2 = MLNClassifier(max_epochs=3, random_state=0).fit(X2[:60], y[:60])
    assert clf4.n_features_in_ == clf2.n_features_in_ == 64
    assert clf4.sample_shape_ == (1, 8, 8) and clf2.sample_shape_ == (64,)
    assert isinstance(clf4.module_, SmallCNN) and isinstance(clf2.module_, MLP)
    assert clf4.predict_proba(X4[60:70]).shape == (10, 10)
    with pytest.raises(ValueError, match="expecting 64 features"):
        clf4.predict(X4[:5, :, :4, :])
    with pytest.raises(ValueError, match="expecting 64 features"):
        clf2.predict(X2[:5, :10])
    with pytest.raises(ValueError, match=r"samples of shape \(1, 8, 8\)"):
        clf4.predict(X2[:5])  # same number of features, wrong layout


def test_predict_proba_matches_softmax_of_logits(digits_flat):
    X, y = digits_flat
    clf = MLNClassifier(max_epochs=5, random_state=0).fit(X[:50], y[:50])
    with torch.no_grad():
        logits = clf.module_(torch.as_tensor(X[50:60]))
    np.testing.assert_allclose(
        clf.predict_proba(X[50:60]), torch.softmax(logits.double(), -1).numpy(), rtol=1e-5
    )


@pytest.mark.parametrize(
    "X, y, match",
    [
        (np.full((10, 4), np.nan), np.arange(10) % 2, "NaN"),
        (np.full((10, 4), np.inf), np.arange(10) % 2, "infinity"),
        (np.zeros((10, 4)), np.arange(9) % 2, "inconsistent numbers of samples"),
        (np.zeros((10, 4)), np.zeros(10), "at least two classes in y; got 1 class"),
        (np.zeros((10, 4, 4)), np.arange(10) % 2, r"2-D .* or 4-D"),
        (np.zeros((10, 1, 4, 4, 1)), np.arange(10) % 2, r"2-D .* or 4-D"),
        (np.zeros(10), np.arange(10) % 2, "2D array"),
        (np.zeros((10, 4)), np.linspace(0, 1, 10), "Unknown label type"),
    ],
)
def test_bad_inputs_raise_clear_errors(X, y, match):
    with pytest.raises(ValueError, match=match):
        MLNClassifier(max_epochs=1).fit(X, y)


@pytest.mark.parametrize(
    "params, error, match",
    [
        ({"lr": -1.0}, ValueError, "'lr' parameter"),
        ({"max_epochs": 0}, ValueError, "'max_epochs' parameter"),
        ({"batch_size": 0}, ValueError, "'batch_size' parameter"),
        ({"momentum": 1.5}, ValueError, "'momentum' parameter"),
        ({"meta_loss": "hinge"}, ValueError, "neither a classical loss"),
        ({"meta_loss": "focal(gamma=x)"}, ValueError, "gamma='x' is not a number"),
        ({"meta_loss": 3}, TypeError, "meta_loss must be"),
        ({"meta_loss": torch.nn.CrossEntropyLoss()}, TypeError, "MetaLossNetwork"),
    ],
)
def test_bad_parameters_raise_in_fit(digits_flat, params, error, match):
    X, y = digits_flat
    clf = MLNClassifier(**{"max_epochs": 1, **params})  # __init__ only stores
    with pytest.raises(error, match=match):
        clf.fit(X[:20], y[:20])


# --------------------------------------------------------------------------- losses
@pytest.mark.parametrize("name", ["cross_entropy", "mse", "label_smoothing", "focal"])
def test_classical_losses(digits_flat, name):
    X, y = digits_flat
    clf = MLNClassifier(meta_loss=name, max_epochs=50, lr=0.1, random_state=0)
    clf.fit(X[:100], y[:100])
    assert isinstance(clf.loss_, ClassicalLoss) and clf.loss_.name == name
    assert clf.score(X[100:600], y[100:600]) > 0.4  # chance is 0.1
    assert np.all(np.isfinite(clf.history_[:, "train_loss"]))


def test_classical_loss_with_parameters_by_name(digits_flat):
    X, y = digits_flat
    clf = MLNClassifier(meta_loss="label_smoothing(smoothing=0.9)", max_epochs=2, random_state=0)
    clf.fit(X[:50], y[:50])
    assert clf.loss_.name == "label_smoothing" and clf.loss_.params == {"smoothing": 0.9}


def test_meta_loss_network_by_path(tmp_path, digits_flat):
    X, y = digits_flat
    mln = MetaLossNetwork(10, random_state=0, anchor=None)
    path = tmp_path / "loss.mln"
    mln.save(path)
    by_module = MLNClassifier(meta_loss=mln, max_epochs=10, random_state=0).fit(X[:60], y[:60])
    for meta_loss in (path, str(path)):
        clf = MLNClassifier(meta_loss=meta_loss, max_epochs=10, random_state=0).fit(X[:60], y[:60])
        assert isinstance(clf.loss_, MetaLossNetwork)
        np.testing.assert_array_equal(clf.loss_.get_flat_params(), mln.get_flat_params())
        np.testing.assert_array_equal(
            clf.predict_proba(X[60:80]), by_module.predict_proba(X[60:80])
        )


def test_fitted_evolver_like_object(digits_flat):
    X, y = digits_flat

    class FittedEvolver:
        meta_loss_ = MetaLossNetwork(10, random_state=1)

    clf = MLNClassifier(meta_loss=FittedEvolver(), max_epochs=2).fit(X[:30], y[:30])
    assert isinstance(clf.loss_, MetaLossNetwork)
    assert clf.loss_ is not FittedEvolver.meta_loss_


def test_meta_loss_is_frozen_and_not_optimized(digits_flat):
    X, y = digits_flat
    mln = MetaLossNetwork(10, hidden_sizes=(4,), anchor=None, random_state=0)
    mln.set_flat_params(np.random.RandomState(0).normal(size=mln.n_params))
    theta = mln.get_flat_params()
    clf = MLNClassifier(meta_loss=mln, max_epochs=10, random_state=0).fit(X[:50], y[:50])
    loss_params = list(clf.loss_.parameters())
    assert loss_params and all(not p.requires_grad for p in loss_params)
    optimized = [p for group in clf.net_.optimizer_.param_groups for p in group["params"]]
    assert not any(p is q for p in optimized for q in loss_params)
    assert {id(p) for p in optimized} == {id(p) for p in clf.module_.parameters()}
    np.testing.assert_array_equal(clf.loss_.get_flat_params(), theta)
    np.testing.assert_array_equal(mln.get_flat_params(), theta)  # the parameter is untouched
    assert mln.theta.requires_grad and clf.loss_ is not mln


# --------------------------------------------------------------------------- modules, optimizer
def test_module_class_with_routed_kwargs(digits, digits_flat):
    X, y = digits_flat
    clf = MLNClassifier(MLP, max_epochs=2, module__hidden_sizes=(7,)).fit(X[:30], y[:30])
    assert clf.module_.layers[0].in_features == 64
    assert clf.module_.layers[0].out_features == 7
    assert clf.module_.layers[-1].out_features == 10
    X4, y4 = digits
    clf = MLNClassifier(SmallCNN, max_epochs=2, module__channels=(4,)).fit(X4[:30], y4[:30] % 3)
    assert clf.module_.convs[0].out_channels == 4 and clf.module_.fc.out_features == 3


def test_default_module_gets_routed_kwargs(digits_flat):
    X, y = digits_flat
    clf = MLNClassifier(max_epochs=2, module__hidden_sizes=(5, 6)).fit(X[:30], y[:30])
    assert [layer.out_features for layer in clf.module_.layers] == [5, 6, 10]


def test_momentum_routing(digits_flat):
    X, y = digits_flat
    sgd = MLNClassifier(max_epochs=1, momentum=0.7).fit(X[:20], y[:20])
    assert sgd.net_.optimizer_.param_groups[0]["momentum"] == 0.7
    override = MLNClassifier(max_epochs=1, optimizer__momentum=0.3).fit(X[:20], y[:20])
    assert override.net_.optimizer_.param_groups[0]["momentum"] == 0.3
    adam = MLNClassifier(max_epochs=1, lr=1e-3, optimizer=torch.optim.Adam).fit(X[:20], y[:20])
    assert isinstance(adam.net_.optimizer_, torch.optim.Adam)
    assert "momentum" not in adam.net_.optimizer_.param_groups[0]
    wd = MLNClassifier(max_epochs=1, optimizer__weight_decay=0.01).fit(X[:20], y[:20])
    assert wd.net_.optimizer_.param_groups[0]["weight_decay"] == 0.01


def test_full_batch_and_mini_batches(digits_flat):
    X, y = digits_flat
    full = MLNClassifier(max_epochs=3, random_state=0).fit(X[:50], y[:50])
    assert [len(row["batches"]) for row in full.history_] == [1, 1, 1]
    mini = MLNClassifier(max_epochs=2, batch_size=16, random_state=0).fit(X[:50], y[:50])
    assert [len(row["batches"]) for row in mini.history_] == [4, 4]
    assert mini.net_.iterator_train__shuffle is True
    assert not hasattr(full.net_, "iterator_train__shuffle")


# --------------------------------------------------------------------------- reproducibility
@pytest.mark.parametrize("batch_size", [-1, 16])
def test_random_state_reproducible_and_no_rng_leak(digits_flat, batch_size):
    X, y = digits_flat
    params = dict(max_epochs=5, batch_size=batch_size, random_state=3)
    torch.manual_seed(1)
    state = torch.random.get_rng_state()
    a = MLNClassifier(**params).fit(X[:60], y[:60])
    assert torch.equal(torch.random.get_rng_state(), state)
    torch.manual_seed(2)  # the global state does not influence fit
    b = MLNClassifier(**params).fit(X[:60], y[:60])
    np.testing.assert_array_equal(a.predict_proba(X[60:]), b.predict_proba(X[60:]))
    c = MLNClassifier(**{**params, "random_state": 4}).fit(X[:60], y[:60])
    assert not np.array_equal(a.predict_proba(X[60:]), c.predict_proba(X[60:]))


def test_random_state_instance_is_accepted(digits_flat):
    X, y = digits_flat
    rng = np.random.RandomState(0)
    a = MLNClassifier(max_epochs=2, random_state=rng).fit(X[:30], y[:30])
    assert a.predict(X[:5]).shape == (5,)


# --------------------------------------------------------------------------- skorch features
def test_callbacks_and_history(digits_flat):
    X, y = digits_flat
    callbacks = [EpochScoring("accuracy", on_train=True, name="train_acc", lower_is_better=False)]
    clf = MLNClassifier(max_epochs=7, callbacks=callbacks, random_state=0).fit(X[:50], y[:50])
    assert len(clf.history_) == 7
    assert clf.history_ is clf.net_.history_
    accs = clf.history_[:, "train_acc"]
    assert len(accs) == 7 and all(0.0 <= a <= 1.0 for a in accs)
    assert "valid_loss" not in clf.history_[-1]  # no hold-out by default
    assert clf.callbacks is callbacks  # the parameter is not replaced


def test_callbacks_routed_params(digits_flat, capsys):
    X, y = digits_flat
    clf = MLNClassifier(max_epochs=2, verbose=1, callbacks__print_log=None)
    clf.fit(X[:30], y[:30])  # skorch's PrintLog is switched off through a routed param
    assert capsys.readouterr().out == ""
    clf = MLNClassifier(max_epochs=2, verbose=1, callbacks__print_log__keys_ignored=["train_loss"])
    clf.fit(X[:30], y[:30])
    out = capsys.readouterr().out
    assert "epoch" in out and "train_loss" not in out


def test_train_split(digits_flat):
    X, y = digits_flat
    clf = MLNClassifier(max_epochs=3, train_split=ValidSplit(5), random_state=0)
    clf.fit(X[:100], y[:100])
    assert "valid_loss" in clf.history_[-1] and "valid_acc" in clf.history_[-1]


def test_verbose(digits_flat, capsys):
    X, y = digits_flat
    MLNClassifier(max_epochs=3, verbose=0).fit(X[:30], y[:30])
    assert capsys.readouterr() == ("", "")
    MLNClassifier(max_epochs=3, verbose=1).fit(X[:30], y[:30])
    assert "train_loss" in capsys.readouterr().out


# --------------------------------------------------------------------------- params
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"hidden_sizes": (8,)}, "prefixes module__, optimizer__"),
        ({"module_hidden_sizes": (8,)}, "did you mean module__hidden_sizes"),
        ({"criterion__reduction": "sum"}, "criterion__reduction"),
        ({"module__": 1}, "unexpected argument"),
    ],
)
def test_unknown_kwargs_raise_in_fit(digits_flat, kwargs, message):
    X, y = digits_flat
    clf = MLNClassifier(max_epochs=1, **kwargs)  # stored, as scikit-learn's __init__ must
    assert clf.get_params()[next(iter(kwargs))] == next(iter(kwargs.values()))
    for estimator in (clf, clone(clf), MLNClassifier(max_epochs=1).set_params(**kwargs)):
        with pytest.raises(TypeError, match=message):
            estimator.fit(X[:20], y[:20])
        assert not hasattr(estimator, "net_")


def test_fitted_attributes_never_become_params(digits_flat):
    """Whatever fit sets (now or in a later version) stays out of get_params and clone."""
    X, y = digits_flat
    clf = MLNClassifier(max_epochs=2, module__hidden_sizes=(8,), random_state=0)
    before = clf.get_params()
    clf.fit(X[:60], y[:60])
    clf.some_new_statistic_ = 1.0  # a fitted attribute a future fit might add
    fitted = {k for k in vars(clf) if k.endswith("_") and not k.startswith("_")}
    assert {"classes_", "net_", "history_", "some_new_statistic_"} <= fitted
    assert clf.get_params() == before
    assert clone(clf).get_params().keys() == before.keys()


def test_routed_kwargs_are_params():
    clf = MLNClassifier(max_epochs=3, module__hidden_sizes=(8,), optimizer__weight_decay=0.1)
    params = clf.get_params()
    assert "module__hidden_sizes=(8,)" in repr(clf)
    assert params["module__hidden_sizes"] == (8,)
    assert params["optimizer__weight_decay"] == 0.1
    cloned = clone(clf)
    assert cloned.get_params()["module__hidden_sizes"] == (8,)
    cloned.set_params(module__hidden_sizes=(4,), iterator_train__drop_last=True, lr=0.5)
    assert cloned.module__hidden_sizes == (4,) and cloned.lr == 0.5
    assert cloned.get_params()["iterator_train__drop_last"] is True
    assert clf.module__hidden_sizes == (8,)
    cloned.set_params(hidden_sizes=(3,))  # checked in fit (test_unknown_kwargs_raise_in_fit)
    assert cloned.get_params()["hidden_sizes"] == (3,)


def test_init_only_stores():
    module = MLP(4, 2)
    clf = MLNClassifier(module, "mse", lr=0.3)
    assert clf.module is module and clf.meta_loss == "mse" and clf.lr == 0.3
    assert not [k for k in vars(clf) if k.endswith("_")]


# --------------------------------------------------------------------------- composition
def test_pipeline(digits_flat):
    X, y = digits_flat
    pipe = make_pipeline(
        FunctionTransformer(np.sqrt), StandardScaler(), MLNClassifier(random_state=0)
    )
    pipe.fit(X[:100], y[:100])
    assert pipe.score(X[100:600], y[100:600]) > 0.6


def test_grid_search_parallel(digits_flat):
    X, y = digits_flat
    grid = GridSearchCV(
        MLNClassifier(max_epochs=10, random_state=0),
        {"lr": [0.01, 0.1], "module__hidden_sizes": [(8,), (16,)]},
        cv=2,
        n_jobs=2,
    )
    grid.fit(X[:80], y[:80])
    assert len(grid.cv_results_["params"]) == 4
    best = grid.best_estimator_
    assert best.module_.layers[0].out_features == best.module__hidden_sizes[0]
    assert best.lr == grid.best_params_["lr"]


def test_pickle_unfitted_and_fitted(digits_flat):
    X, y = digits_flat
    clf = MLNClassifier(max_epochs=5, random_state=0, module__hidden_sizes=(8,))
    restored = pickle.loads(pickle.dumps(clf))
    assert restored.get_params()["module__hidden_sizes"] == (8,)
    clf.fit(X[:50], y[:50])
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict_proba(X[50:]), clf.predict_proba(X[50:]))
    np.testing.assert_array_equal(restored.predict(X[50:]), clf.predict(X[50:]))
    assert len(restored.history_) == 5


def test_module_with_wrong_output_size_fails_early(digits_flat):
    X, y = digits_flat
    with pytest.raises(
        ValueError, match=r"output logits of shape .* \(2, 10\); it output \(2, 5\)"
    ):
        MLNClassifier(MLP(64, 5), max_epochs=1).fit(X[:30], y[:30])


def test_joint_meta_loss_must_match_number_of_classes(digits_flat):
    X, y = digits_flat
    joint = MetaLossNetwork(3, structure="joint", random_state=0)
    with pytest.raises(ValueError, match="joint meta-loss for 3 classes but y has 10"):
        MLNClassifier(meta_loss=joint, max_epochs=1).fit(X[:30], y[:30])
    clf = MLNClassifier(meta_loss=joint, max_epochs=2).fit(X[:30], y[:30] % 3)
    assert clf.predict_proba(X[:4]).shape == (4, 3)


def test_auto_trains_with_the_measured_default_of_the_input(digits, digits_flat):
    """meta_loss="auto" takes loss, lr and epochs from AUTO_TRAINING by kind of input; an
    explicit lr or max_epochs wins; a chosen loss keeps the plain defaults."""
    from sklearn_mln._classifier._estimator import AUTO_TRAINING, MANUAL_DEFAULTS
    from sklearn_mln._losses._resolve import resolve_loss

    for (X, y), kind in ((digits, "images"), (digits_flat, "flat")):
        loss, lr, epochs = AUTO_TRAINING[kind]
        clf = MLNClassifier(max_epochs=2, random_state=0).fit(X[:60], y[:60])
        assert (clf.lr_, clf.max_epochs_, len(clf.history_)) == (lr, 2, 2)
        assert repr(clf.loss_) == repr(resolve_loss(loss))
        clf = MLNClassifier(lr=0.05, random_state=0).set_params(max_epochs=1).fit(X[:60], y[:60])
        assert (clf.lr_, clf.max_epochs_) == (0.05, 1)
    X, y = digits_flat
    clf = MLNClassifier(meta_loss="mse", max_epochs=1, random_state=0).fit(X[:60], y[:60])
    assert (clf.lr_, repr(clf.loss_)) == (MANUAL_DEFAULTS[0], "ClassicalLoss('mse')")
    clf = MLNClassifier(meta_loss="mse", random_state=0).set_params(max_epochs=None)
    assert clf.fit(X[:30], y[:30]).max_epochs_ == MANUAL_DEFAULTS[1]


def test_auto_training_is_the_committed_benchmark_choice():
    """AUTO_TRAINING says what benchmarks/tools/default_classifier.py chose and tested."""
    import json
    from pathlib import Path

    from sklearn_mln._classifier._estimator import AUTO_TRAINING
    from sklearn_mln._losses._resolve import resolve_loss

    report = Path(__file__).resolve().parents[1] / "benchmarks/results/default_classifier.json"
    if not report.is_file():
        pytest.skip("the default has not been benchmarked in this checkout")
    for kind, chosen in json.loads(report.read_text())["defaults"].items():
        loss, lr, epochs = AUTO_TRAINING[kind]
        expected = ClassicalLoss(chosen["loss"], **chosen["params"])
        assert repr(resolve_loss(loss)) == repr(expected)
        assert (lr, epochs) == (chosen["lr"], chosen["steps"])


def test_a_progress_input_loss_is_told_each_epochs_progress(digits_flat):
    from skorch.callbacks import Callback

    class RecordProgress(Callback):
        def initialize(self):
            self.seen = []
            return self

        def on_epoch_end(self, net, **kwargs):
            self.seen.append(net.criterion_.progress)

    X, y = digits_flat
    loss = MetaLossNetwork(10, progress_input=True, random_state=0)
    clf = MLNClassifier(
        meta_loss=loss, lr=0.05, max_epochs=4, callbacks=[RecordProgress()], random_state=0
    ).fit(X[:60], y[:60])
    (record,) = [cb for _, cb in clf.net_.callbacks_ if isinstance(cb, RecordProgress)]
    assert record.seen == [0.0, 0.25, 0.5, 0.75]
    assert loss.progress is None  # the user's loss is not the one trained


def test_a_shots_input_loss_is_told_the_examples_per_class_of_y(digits_flat):
    from skorch.callbacks import Callback

    class RecordShots(Callback):
        def on_epoch_end(self, net, **kwargs):
            self.seen = net.criterion_.shots

    X, y = digits_flat
    rows = np.concatenate([np.flatnonzero(y == c)[:6] for c in range(5)])  # 6 of 5 classes
    loss = MetaLossNetwork(10, shots_input=True, random_state=0)
    clf = MLNClassifier(meta_loss=loss, max_epochs=2, callbacks=[RecordShots()], random_state=0)
    clf.fit(X[rows], y[rows])
    (record,) = [cb for _, cb in clf.net_.callbacks_ if isinstance(cb, RecordShots)]
    assert record.seen == 6.0
    assert loss.shots is None  # the user's loss is not the one trained


class _RecordsThreads(torch.nn.Module):
    """A linear classifier that records torch's thread count at every forward pass."""

    def __init__(self):
        super().__init__()
        self.seen = []
        self.fc = torch.nn.Linear(64, 10)

    def forward(self, X):
        self.seen.append(torch.get_num_threads())
        return self.fc(X.flatten(1))


@pytest.mark.parametrize(
    "n_threads, small_work, idle, expected",
    [
        ("auto", True, 8, 1),  # overhead-bound: one thread, whatever is idle
        ("auto", False, 8, "caller"),  # larger work, cores to spare: the caller's threads
        ("auto", False, 1, 1),  # larger work on a busy machine: what is idle
        (2, True, 8, 2),
        (None, True, 1, "caller"),
    ],
)
def test_fit_and_predict_pick_their_threads_and_restore_the_callers(
    digits_flat, monkeypatch, n_threads, small_work, idle, expected
):
    from sklearn_mln._utils import _threads

    if not small_work:  # every step counts as large work
        monkeypatch.setattr(_threads, "SMALL_WORK_FLOPS", 0)
    monkeypatch.setattr(_threads, "idle_cores", lambda: idle)
    X, y = digits_flat
    previous = torch.get_num_threads()
    caller = 3  # what neither the library nor the machine would pick
    torch.set_num_threads(caller)
    try:
        clf = MLNClassifier(module=_RecordsThreads(), max_epochs=2, n_threads=n_threads)
        clf.fit(X[:50], y[:50])
        seen_in_fit = set(clf.module_.seen[-2:])  # the two epochs (before: checks and probes)
        clf.module_.seen.clear()
        clf.predict(X[:5])
        assert torch.get_num_threads() == caller
    finally:
        torch.set_num_threads(previous)
    want = caller if expected == "caller" else expected
    assert seen_in_fit == {want} and set(clf.module_.seen) == {want}
    assert clf.n_threads_ == (None if n_threads is None else want)


def test_an_mlp_on_small_data_is_overhead_bound_and_a_large_cnn_set_is_not(digits, monkeypatch):
    from sklearn_mln._classifier._nets import default_module_factory
    from sklearn_mln._utils import _threads

    monkeypatch.setattr(_threads, "idle_cores", lambda: 2)
    X, _ = digits
    mlp = default_module_factory((64,), 10)()
    cnn = default_module_factory(X.shape[1:], 10)()
    assert _threads.threads_for_training(mlp, torch.as_tensor(X[:1]).flatten(1), 100, -1) == 1
    previous = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        assert _threads.threads_for_training(cnn, torch.as_tensor(X[:1]), 100_000, -1) == 2
    finally:
        torch.set_num_threads(previous)


def test_a_spinning_process_is_seen_by_the_thread_choice():
    import subprocess
    import sys
    import time

    from sklearn_mln._utils import _threads

    if _threads._running_processes() is None:
        pytest.skip("no /proc to list processes in")
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        seen = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not seen:
            with open(f"/proc/{spinner.pid}/stat", "rb") as f:
                if f.read().split(b") ")[1][:1] == b"R":
                    seen.append(_threads._running_processes())
    finally:
        spinner.kill()
        spinner.wait()
    assert seen and seen[0] >= 1  # the spinner counts
    assert 1 <= _threads.idle_cores() <= (os.cpu_count() or 1)
