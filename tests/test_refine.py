"""Gradient refinement: the meta-gradient through unrolled training, and MLNEvolver's stage."""

import numpy as np
import pytest

from sklearn_mln import MetaLossNetwork, MLNEvolver
from sklearn_mln._classifier._nets import default_module_factory
from sklearn_mln._evolution._inner import InnerConfig, make_task_batch
from sklearn_mln._evolution._refine import Adam, validation_loss_and_gradient
from sklearn_mln._evolution._tasks import class_indices, draw_seeds, sample_tasks


def _problem(X, y, steps=5):
    rng = np.random.RandomState(0)
    tasks = sample_tasks(class_indices(y[:600], 10), 2, 3, None, rng)
    batch = make_task_batch(tasks, draw_seeds(rng, 2), X[:600], y[:600], y[600:900])
    config = InnerConfig(default_module_factory(X.shape[1:], 10), lr=0.1, steps=steps)
    return config, batch, X[600:900]


def test_the_meta_gradient_matches_finite_differences(digits_flat, one_torch_thread):
    X, y = digits_flat
    config, batch, X_val = _problem(X, y)
    net = MetaLossNetwork(10, shots_input=True, progress_input=True, random_state=0)
    theta = net.get_flat_params() + np.random.RandomState(1).normal(0, 0.01, net.n_params)
    value, gradient = validation_loss_and_gradient(theta, net.spec, config, batch, X_val)
    assert np.isfinite(value) and gradient.shape == theta.shape
    for i in (0, 1):  # the linear term's coefficients: the largest, cleanest partials
        step = np.zeros_like(theta)
        step[i] = 1e-3
        up = validation_loss_and_gradient(theta + step, net.spec, config, batch, X_val)[0]
        down = validation_loss_and_gradient(theta - step, net.spec, config, batch, X_val)[0]
        assert gradient[i] == pytest.approx((up - down) / 2e-3, rel=0.05)
    assert np.abs(gradient[2:]).max() > 0  # the network's weights get a gradient too


def test_the_cnn_is_differentiated_through_its_pooling(digits, one_torch_thread):
    X, y = digits
    config, batch, X_val = _problem(X, y, steps=3)
    net = MetaLossNetwork(10, random_state=0)
    theta = net.get_flat_params() + np.random.RandomState(1).normal(0, 0.01, net.n_params)
    value, gradient = validation_loss_and_gradient(theta, net.spec, config, batch, X_val)
    assert np.isfinite(value) and np.all(np.isfinite(gradient)) and np.abs(gradient).max() > 0


def test_adam_takes_the_first_step_of_size_lr_against_the_gradient():
    adam = Adam(lr=0.1)
    x = adam.step(np.zeros(3), np.array([2.0, -0.5, 0.0]))
    np.testing.assert_allclose(x, [-0.1, 0.1, 0.0], atol=1e-6)


def test_refinement_joins_the_reevaluation_and_never_makes_the_loss_worse(
    digits_flat, tiny_evolver
):
    X, y = digits_flat
    settings = {**tiny_evolver, "n_generations": 2, "inner_steps": 8}
    plain = MLNEvolver(**settings).fit(X[:300], y[:300])
    refined = MLNEvolver(**settings, refine_steps=3, refine_lr=0.01).fit(X[:300], y[:300])
    assert plain.refinement_ == [] and len(refined.refinement_) == 3
    assert refined.reevaluation_["labels"][-1] == "gradient-refined"
    assert refined.reevaluation_["labels"][:-1] == plain.reevaluation_["labels"]
    # evolution is untouched by the stage that follows it; the best is kept
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in plain.history_]
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in refined.history_] == strip
    assert refined.best_fitness_ >= plain.best_fitness_
    again = MLNEvolver(**settings, refine_steps=3, refine_lr=0.01).fit(X[:300], y[:300])
    np.testing.assert_array_equal(
        again.meta_loss_.get_flat_params(), refined.meta_loss_.get_flat_params()
    )
