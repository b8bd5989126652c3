"""Chunked evaluation: shared set-up per chunk, thread caps, agreement across n_jobs."""

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from sklearn_mln import ClassicalLoss, MetaLossNetwork
from sklearn_mln._classifier._nets import default_module_factory
from sklearn_mln._evolution._inner import (
    InnerConfig,
    activation_floats,
    init_population,
    make_task_batch,
    members_per_pass,
    mln_population_loss,
    prepare_tasks,
    score_population,
    to_tensor,
)
from sklearn_mln._evolution._parallel import (
    evaluate_chunk,
    evaluate_population,
    single_threaded_blas,
)
from sklearn_mln._evolution._tasks import class_indices, draw_seeds, sample_tasks
from sklearn_mln.datasets import load_digits_images


@pytest.fixture(scope="module")
def setup():
    X, y = load_digits_images(return_X_y=True)
    X = X.reshape(len(X), -1)
    rng = np.random.RandomState(0)
    source, val = np.arange(600), np.arange(600, 900)
    tasks = sample_tasks(class_indices(y[source], 10), 3, 5, None, rng)
    batch = make_task_batch(tasks, draw_seeds(rng, 3), X[source], y[source], y[val])
    config = InnerConfig(default_module_factory((64,), 10), lr=0.1, steps=15)
    net = MetaLossNetwork(random_state=0)
    thetas = net.get_flat_params() + 0.05 * rng.standard_normal((5, net.n_params))
    return config, batch, X[val], net.spec, thetas


def test_prepared_tasks_match_a_fresh_set_up(setup):
    """The set-up built once per chunk is what each pass would build for itself."""
    config, batch, X_val, spec, thetas = setup
    prepared = prepare_tasks(config, batch)
    module, init = init_population(config.module_factory, batch.init_seeds)
    for name, value in init.items():
        assert np.array_equal(prepared.init[name].numpy(), value.numpy())
    # the probe depends on a sample's shape only: training and validation inputs agree
    assert prepared.floats_per_sample == activation_floats(
        module, init, to_tensor(X_val, "cpu").float()
    )
    assert members_per_pass(config, batch, prepared) == members_per_pass(config, batch)
    loss = mln_population_loss(thetas, spec, batch.n_tasks)
    fresh = score_population(loss, len(thetas), config, batch, X_val)
    shared = score_population(loss, len(thetas), config, batch, X_val, prepared=prepared)
    np.testing.assert_array_equal(fresh[0], shared[0])
    np.testing.assert_array_equal(fresh[1], shared[1])


def test_chunk_passes_agree_with_one_pass(setup, monkeypatch):
    """A chunk cut into several passes (small memory budget) gives one pass's results."""
    import sklearn_mln._evolution._inner as inner

    config, batch, X_val, spec, thetas = setup
    whole = evaluate_chunk(thetas, spec, config, batch, X_val, True)
    prepared = prepare_tasks(config, batch)
    per_member = prepared.floats_per_sample * batch.X_train.shape[1]
    monkeypatch.setattr(inner, "MEMORY_BUDGET_FLOATS", 2 * batch.n_tasks * per_member)
    assert members_per_pass(config, batch, prepared) // batch.n_tasks == 2
    cut = evaluate_chunk(thetas, spec, config, batch, X_val, True)
    np.testing.assert_array_equal(whole[0], cut[0])
    np.testing.assert_array_equal(whole[1], cut[1])


def test_n_jobs_agree(setup):
    config, batch, X_val, spec, thetas = setup
    one = evaluate_population(thetas, spec, config, batch, X_val, n_jobs=1)
    two = evaluate_population(thetas, spec, config, batch, X_val, n_jobs=2)
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])


def test_single_threaded_blas_is_scoped():
    def blas_threads():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    before = blas_threads()
    if not before:
        pytest.skip("no BLAS thread pool loaded: nothing to limit")
    with single_threaded_blas():
        assert all(n == 1 for n in blas_threads())
    assert blas_threads() == before


def test_classical_loss_chunk_runs(setup):
    config, batch, X_val, _, _ = setup
    acc, failed = score_population(
        ClassicalLoss().per_sample, 1, config, batch, X_val, prepared=prepare_tasks(config, batch)
    )
    assert acc.shape == (1, batch.n_tasks) and not failed.any()
