"""The fused per-class kernel (FusedPerClassLoss) against the plain autograd path."""

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sklearn_mln import MetaLossNetwork
from sklearn_mln._losses._meta_loss import MetaLossSpec, _fused, meta_loss_per_sample

CASES = list(
    itertools.product(
        ["tanh", "relu", "softplus", "gelu", "sigmoid"],
        [(8,), (4, 3), ()],
        ["log_probs", "probs", "logits"],
        [None, "cross_entropy"],
    )
)


def _plain_and_fused(spec, theta, logits, y, *, exact, mean, progress=None, shots=None):
    """(value, d/d logits, d/d theta) of both paths under a non-uniform upstream gradient."""
    results = []
    for fused in (True, False):
        z = logits.clone().requires_grad_(True)
        th = theta.clone().requires_grad_(True)
        if fused:
            out = _fused(th, z, y, spec, exact=exact, mean=mean, progress=progress, shots=shots)
        else:
            out = meta_loss_per_sample(th, z, y, spec, progress=progress, shots=shots)
            out = out.mean(-1) if mean else out
        weights = torch.rand(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(3))
        results.append((out, *torch.autograd.grad((out * weights).sum(), [z, th])))
    return results


@pytest.mark.parametrize("activation, hidden_sizes, inputs, anchor", CASES)
def test_fused_kernel_matches_autograd(activation, hidden_sizes, inputs, anchor):
    spec = MetaLossSpec("per_class", 10, hidden_sizes, activation, inputs, anchor)
    theta = torch.as_tensor(np.random.RandomState(1).normal(size=(3, spec.n_params)))
    logits = 3.0 * torch.randn(3, 16, 10, dtype=torch.float64, generator=torch.Generator())
    y = torch.randint(0, 10, (16,))
    for exact, mean in [(True, False), (False, False), (True, True)]:
        fused, plain = _plain_and_fused(spec, theta, logits, y, exact=exact, mean=mean)
        for a, b in zip(fused, plain):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "progress_input, shots_input", [(True, False), (False, True), (True, True)]
)
def test_fused_kernel_folds_task_inputs_into_the_first_layer(progress_input, shots_input):
    spec = MetaLossSpec(
        "per_class", 10, (8,), "tanh", "probs", None, False, progress_input, shots_input
    )
    theta = torch.as_tensor(np.random.RandomState(2).normal(size=(2, spec.n_params)))
    logits = 3.0 * torch.randn(2, 12, 10, dtype=torch.float64)
    y = torch.randint(0, 10, (2, 12))  # per-member labels
    fused, plain = _plain_and_fused(
        spec, theta, logits, y, exact=False, mean=False, progress=0.3, shots=5.0
    )
    for a, b in zip(fused, plain):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_criterion_gradients_match_the_plain_path_in_float32():
    net = MetaLossNetwork(10, hidden_sizes=(16,), inputs="probs", random_state=0)
    net.set_flat_params(np.random.RandomState(0).normal(0, 0.5, net.n_params))
    logits = torch.randn(50, 10).requires_grad_(True)
    y = torch.randint(0, 10, (50,))
    value = net(logits, y)
    value.backward()
    z = logits.detach().clone().requires_grad_(True)
    theta = net.theta.detach().clone().requires_grad_(True)
    plain = meta_loss_per_sample(theta[None], z[None], y, net.spec).mean()
    plain.backward()
    torch.testing.assert_close(value, plain)
    torch.testing.assert_close(logits.grad, z.grad)
    torch.testing.assert_close(net.theta.grad, theta.grad)


def test_frozen_and_trainable_losses_give_the_same_values_and_logit_gradients():
    net = MetaLossNetwork(10, anchor=None, random_state=0)
    net.set_flat_params(np.random.RandomState(1).normal(0, 0.5, net.n_params))
    frozen = MetaLossNetwork.from_spec(net.spec, net.get_flat_params()).requires_grad_(False)
    logits, y = torch.randn(20, 10), torch.randint(0, 10, (20,))
    grads = []
    for loss in (net, frozen):
        z = logits.clone().requires_grad_(True)
        value = loss(z, y)
        grads.append((value, *torch.autograd.grad(value, z)))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(frozen(logits, y), grads[0][0], rtol=0, atol=0)


def test_anchored_start_is_cross_entropy_with_its_gradient():
    net = MetaLossNetwork(random_state=0)
    logits = torch.randn(30, 10).requires_grad_(True)
    y = torch.randint(0, 10, (30,))
    torch.testing.assert_close(
        net.per_sample(logits, y), F.cross_entropy(logits, y, reduction="none"), rtol=0, atol=0
    )
    (grad,) = torch.autograd.grad(net(logits, y), logits)
    (expected,) = torch.autograd.grad(F.cross_entropy(logits, y), logits)
    torch.testing.assert_close(grad, expected)


def test_second_order_gradients_go_through_the_plain_path():
    net = MetaLossNetwork(10, inputs="probs", random_state=0)
    net.set_flat_params(np.random.RandomState(2).normal(0, 0.5, net.n_params))
    logits = torch.randn(8, 10, dtype=torch.float64)
    y = torch.randint(0, 10, (8,))
    results = []
    for fused in (True, False):
        z = logits.clone().requires_grad_(True)
        theta = net.theta.detach().clone().requires_grad_(True)
        if fused:
            value = _fused(
                theta[None], z[None], y, net.spec, exact=True, mean=True, progress=None, shots=None
            )
        else:
            value = meta_loss_per_sample(theta[None], z[None], y, net.spec).mean(-1)
        (grad,) = torch.autograd.grad(value.sum(), z, create_graph=True)
        results.append(torch.autograd.grad(grad.square().sum(), [z, theta]))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b)


def test_weights_written_behind_autograds_back_are_seen():
    """``.data`` writes bypass the version counter; the kernel's cache must not."""
    net = MetaLossNetwork(10, anchor=None, random_state=0)
    logits, y = torch.randn(6, 10), torch.randint(0, 10, (6,))
    before = net(logits, y)
    new = np.random.RandomState(3).normal(size=net.n_params)
    net.theta.data.copy_(torch.as_tensor(new))
    expected = MetaLossNetwork.from_spec(net.spec, new)(logits, y)
    after = net(logits, y)
    assert not torch.equal(before, after)
    torch.testing.assert_close(after, expected, rtol=0, atol=0)


def test_population_path_trains_a_loss_that_needs_a_gradient():
    spec = MetaLossSpec("per_class", 10, (8,), "tanh", "log_probs", "cross_entropy")
    theta = torch.as_tensor(np.random.RandomState(4).normal(size=(2, spec.n_params)))
    logits = 3.0 * torch.randn(2, 8, 10, dtype=torch.float64)
    y = torch.randint(0, 10, (8,))
    grads = []
    for fast in (True, False):
        leaf = theta.clone().requires_grad_(True)
        out = meta_loss_per_sample(leaf, logits, y, spec, fast=fast)
        grads.append(torch.autograd.grad(out.sum(), leaf)[0])
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("hidden_sizes", [(8,), (4, 3)])
def test_fused_kernel_reusing_its_buffers_matches_autograd_call_after_call(hidden_sizes):
    # a frozen theta: the kernel then writes its activations into per-thread buffers that
    # the next call overwrites, so values must not depend on an earlier call
    spec = MetaLossSpec("per_class", 10, hidden_sizes, "tanh", "probs", "cross_entropy")
    theta = torch.as_tensor(np.random.RandomState(4).normal(size=(3, spec.n_params)))
    generator = torch.Generator().manual_seed(5)
    calls = [
        (3.0 * torch.randn(3, n, 10, dtype=torch.float64, generator=generator), n)
        for n in (400, 400, 300)
    ]  # fmt: skip: hidden arrays large enough to be kept
    kept = []
    for logits, n in calls:
        y = torch.randint(0, 10, (n,), generator=generator)
        z = logits.clone().requires_grad_(True)
        out = _fused(theta, z, y, spec, exact=False, mean=True, progress=None, shots=None)
        (d_fused,) = torch.autograd.grad(out.sum(), [z])
        kept.append((out, d_fused, logits, y))
    for out, d_fused, logits, y in kept:  # compared only after every call has run
        z = logits.clone().requires_grad_(True)
        plain = meta_loss_per_sample(theta, z, y, spec).mean(-1)
        (d_plain,) = torch.autograd.grad(plain.sum(), [z])
        torch.testing.assert_close(out, plain, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(d_fused, d_plain, rtol=1e-10, atol=1e-10)


def test_the_kernels_kept_buffers_stay_bounded():
    from sklearn_mln._losses._kernels import _WORKSPACE

    spec = MetaLossSpec("per_class", 10, (16,), "tanh", "probs", "cross_entropy")
    theta = torch.zeros(1, spec.n_params)
    big = torch.randn(1, 40_000, 10, requires_grad=True)  # a hidden array of 25 MiB
    out = _fused(theta, big, torch.zeros(40_000, dtype=torch.long), spec, exact=False,
                 mean=True, progress=None, shots=None)  # fmt: skip
    out.backward()
    kept = sum(t.numel() * t.element_size() for t in _WORKSPACE.tensors.values())
    assert kept <= 3 * _WORKSPACE.MAX_BYTES
    assert all(t.numel() < 16 * 40_000 * 10 for t in _WORKSPACE.tensors.values())
