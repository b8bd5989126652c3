"""The compiled criterion kernel (``set_config(native_kernels=True)``) against the torch path."""

import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import sklearn_mln
from sklearn_mln import MetaLossNetwork, MLNClassifier, MLNEvolver, config_context, load_pretrained
from sklearn_mln._losses import _native
from sklearn_mln._losses._meta_loss import _layout, meta_loss_per_sample
from sklearn_mln.toolkit import (
    InnerConfig,
    class_indices,
    draw_seeds,
    make_task_batch,
    resolve_module_factory,
    sample_tasks,
)

pytest.importorskip("numba")

SPECS = [
    {},
    {"inputs": "probs", "hidden_sizes": (16,)},
    {"inputs": "logits"},
    {"anchor": None},
    {"activation": "sigmoid", "inputs": "probs"},
    {"activation": "relu", "anchor": None},
    {"progress_input": True, "shots_input": True},
]


def _loss(spec: dict, seed: int = 0) -> MetaLossNetwork:
    """A network away from its start (so every term of the kernel is exercised), frozen."""
    net = MetaLossNetwork(**spec, random_state=seed).requires_grad_(False)
    rng = np.random.RandomState(seed)
    theta = net.get_flat_params()
    theta[:2] = [0.1, -0.1]  # the linear term
    net.set_flat_params(theta + 0.05 * rng.standard_normal(net.n_params))
    net.progress, net.shots = 0.4, 5
    return net


def _value_and_gradient(net, logits, y, native: bool):
    logits = logits.detach().clone().requires_grad_()
    with config_context(native_kernels=native):
        value = net(logits, y)
        (gradient,) = torch.autograd.grad(value, logits)
    return value.detach(), gradient


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()))
def test_native_kernel_agrees_with_torch_path(spec, dtype):
    net = _loss(spec)
    generator = torch.Generator().manual_seed(1)
    logits = 3 * torch.randn(64, 7, generator=generator, dtype=dtype)
    y = torch.randint(0, 7, (64,), generator=generator)
    assert _native.applies(_layout(net.spec), logits, need_dtheta=False) is False  # off
    with config_context(native_kernels=True):
        assert _native.applies(_layout(net.spec), logits, need_dtheta=False)
    value, gradient = _value_and_gradient(net, logits, y, native=False)
    native_value, native_gradient = _value_and_gradient(net, logits, y, native=True)
    assert native_value.dtype == dtype and native_gradient.dtype == dtype
    assert float(value) > 0 and gradient.abs().max() > 0  # a case that tests something
    tol = {"rtol": 2e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-14}
    torch.testing.assert_close(native_value, value, **tol)
    torch.testing.assert_close(native_gradient, gradient, **tol)


def test_native_kernel_serves_the_shipped_loss_and_its_gradient_of_gradient():
    net = load_pretrained("fashion-mnist")
    logits = torch.randn(100, 10, generator=torch.Generator().manual_seed(2))
    y = torch.arange(100) % 10

    def gradient_and_second(native: bool):
        z = logits.clone().requires_grad_()
        with config_context(native_kernels=native):
            (gradient,) = torch.autograd.grad(net(z, y), z, create_graph=True)
            (second,) = torch.autograd.grad(gradient.square().sum(), z)
        return gradient.detach(), second

    gradient, second = gradient_and_second(native=False)
    native_gradient, native_second = gradient_and_second(native=True)
    assert gradient.abs().max() > 0 and second.abs().max() > 0
    torch.testing.assert_close(native_gradient, gradient, rtol=2e-5, atol=1e-7)
    torch.testing.assert_close(native_second, second, rtol=1e-4, atol=1e-6)


def test_native_kernel_steps_aside_where_it_does_not_apply():
    logits = torch.randn(8, 5)
    trainable = MetaLossNetwork(random_state=0)  # theta needs a gradient: the torch path
    deep = MetaLossNetwork(hidden_sizes=(4, 4), random_state=0)
    with config_context(native_kernels=True):
        assert not _native.applies(_layout(trainable.spec), logits, need_dtheta=True)
        assert not _native.applies(_layout(deep.spec), logits, need_dtheta=False)
        assert not _native.applies(_layout(deep.spec), logits.half(), need_dtheta=False)
        assert not _native.applies(_layout(trainable.spec), logits[:0], need_dtheta=False)
        y = torch.arange(8) % 5
        trainable(logits, y).backward()
    assert trainable.theta.grad is not None and trainable.theta.grad.abs().sum() > 0


def test_native_kernel_gives_nan_for_nan_logits_like_the_torch_path():
    net = load_pretrained("fashion-mnist")
    logits = torch.randn(4, 10)
    logits[1, 3] = float("nan")
    y = torch.tensor([0, 1, 2, 3])
    for native in (False, True):
        value, gradient = _value_and_gradient(net, logits, y, native=native)
        assert torch.isnan(value) and torch.isnan(gradient[1]).all()
        assert torch.isfinite(gradient[0]).all()


def test_native_kernel_rejects_labels_outside_the_classes():
    net = load_pretrained("fashion-mnist")
    logits = torch.randn(4, 10)
    for bad in (10, -1):
        with config_context(native_kernels=True), pytest.raises(IndexError, match="label"):
            net(logits, torch.tensor([0, 1, bad, 3]))
    with pytest.raises(RuntimeError, match="out of bounds"):  # the torch path
        net(logits, torch.tensor([0, 1, 10, 3]))


def test_classifier_trains_the_same_with_native_kernels():
    rng = np.random.RandomState(0)
    X = rng.standard_normal((60, 6)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1)
    probabilities = []
    for native in (False, True):
        with config_context(native_kernels=native):
            clf = MLNClassifier(meta_loss="fashion-mnist", max_epochs=30, random_state=0)
            probabilities.append(clf.fit(X, y).predict_proba(X))
    np.testing.assert_allclose(probabilities[1], probabilities[0], atol=1e-4)


def test_set_config_checks_and_context_restores(monkeypatch):
    assert sklearn_mln.get_config() == {"native_kernels": False}
    with config_context(native_kernels=True):
        assert sklearn_mln.get_config()["native_kernels"] is True
        with pytest.raises(TypeError, match="Unknown settings"):
            with config_context(threads=2):
                pass
    assert sklearn_mln.get_config()["native_kernels"] is False
    with pytest.raises(ValueError, match="must be a bool"):
        sklearn_mln.set_config(native_kernels=1)
    monkeypatch.setattr("sklearn_mln._utils._config.find_spec", lambda name: None)
    with pytest.raises(ImportError, match=r"sklearn-mln\[fast\]"):
        sklearn_mln.set_config(native_kernels=True)
    assert sklearn_mln.get_config()["native_kernels"] is False


def test_environment_variable_turns_native_kernels_on_in_a_new_process():
    code = "import sklearn_mln; print(sklearn_mln.get_config()['native_kernels'])"
    env = {**__import__("os").environ, "SKLEARN_MLN_NATIVE_KERNELS": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "True", out.stderr


def test_cross_entropy_start_is_cross_entropy_on_the_native_path():
    logits = torch.randn(32, 10, dtype=torch.float64)
    y = torch.arange(32) % 10
    net = MetaLossNetwork(random_state=0).requires_grad_(False)  # starts as exactly CE
    value, gradient = _value_and_gradient(net, logits, y, native=True)
    z = logits.clone().requires_grad_()
    expected = F.cross_entropy(z, y)
    torch.testing.assert_close(value, expected.detach(), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(gradient, torch.autograd.grad(expected, z)[0])


@pytest.mark.parametrize("shared_labels", [True, False], ids=["y (n,)", "y (P, n)"])
def test_native_kernel_agrees_with_torch_path_on_a_population(shared_labels):
    """The inner loop's form: one network per member, per-sample losses (no mean)."""
    spec = MetaLossNetwork(inputs="probs", hidden_sizes=(16,), shots_input=True).spec
    generator = torch.Generator().manual_seed(3)
    start = _loss({"inputs": "probs", "hidden_sizes": (16,), "shots_input": True})
    noise = 0.05 * torch.randn(6, start.n_params, generator=generator, dtype=torch.float64)
    theta = torch.as_tensor(start.get_flat_params()) + noise
    logits = 3 * torch.randn(6, 40, 10, generator=generator)
    y = torch.randint(0, 10, (40,) if shared_labels else (6, 40), generator=generator)
    weights = torch.rand(6, 40, generator=generator)  # a different weight for every loss
    results = []
    for native in (False, True):
        z = logits.clone().requires_grad_()
        with config_context(native_kernels=native):
            losses = meta_loss_per_sample(theta, z, y, spec, fast=True, shots=5)
            (gradient,) = torch.autograd.grad((losses * weights).sum(), z)
        results.append((losses.detach(), gradient))
    (losses, gradient), (native_losses, native_gradient) = results
    assert losses.shape == native_losses.shape == (6, 40) and losses.max() > 0
    torch.testing.assert_close(native_losses, losses, rtol=2e-5, atol=1e-6)
    torch.testing.assert_close(native_gradient, gradient, rtol=2e-5, atol=1e-6)


def test_evolution_with_native_kernels_is_the_same_for_n_jobs_1_and_2(digits_flat, monkeypatch):
    """Each worker compiles its own kernel: the result does not depend on n_jobs."""
    X, y = digits_flat
    calls = []
    loss_forward = _native.loss_forward
    monkeypatch.setattr(_native, "loss_forward", lambda *a: calls.append(1) or loss_forward(*a))
    settings = dict(n_shots=5, n_tasks=2, popsize=4, n_generations=3, inner_steps=20)
    with config_context(native_kernels=True):
        thetas = [
            MLNEvolver(**settings, random_state=5, n_jobs=n_jobs)
            .fit(X[:300], y[:300])
            .meta_loss_.get_flat_params()
            for n_jobs in (1, 2)
        ]
    assert calls  # the population path ran on the kernel (in this process, for n_jobs=1)
    np.testing.assert_array_equal(thetas[1], thetas[0])


def test_workers_evaluate_under_the_callers_settings(digits_flat, monkeypatch):
    """A worker process does not share the caller's settings: they travel with the task."""
    from sklearn_mln._evolution import _parallel

    seen = []

    def record(*args):
        seen.append(args[-1])
        return np.zeros((1, 1)), np.zeros((1, 1), dtype=bool)

    monkeypatch.setattr(_parallel, "evaluate_chunk", record)
    with config_context(native_kernels=True):
        _parallel.evaluate_population(np.zeros((1, 35)), None, None, None, None, n_jobs=1)
    assert seen == [{"native_kernels": True}]
    monkeypatch.undo()

    calls = []
    loss_forward = _native.loss_forward
    monkeypatch.setattr(_native, "loss_forward", lambda *a: calls.append(1) or loss_forward(*a))
    X, y = digits_flat
    rng = np.random.RandomState(0)
    tasks = sample_tasks(class_indices(y[:200], 10), 2, 3, None, rng)
    batch = make_task_batch(tasks, draw_seeds(rng, 2), X[:200], y[:200], y[200:300])
    config = InnerConfig(resolve_module_factory(None, X.shape[1:], 10), steps=5)
    spec = MetaLossNetwork().spec
    thetas = np.tile(MetaLossNetwork(random_state=0).get_flat_params(), (2, 1))
    for settings in ({"native_kernels": False}, {"native_kernels": True}):
        _parallel.evaluate_chunk(thetas, spec, config, batch, X[200:300], True, settings)
        assert bool(calls) == settings["native_kernels"]  # the kernel ran where asked
    assert sklearn_mln.get_config()["native_kernels"] is False  # and the caller's is kept
