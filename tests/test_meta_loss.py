import io
import json
import os
import zipfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import sklearn_mln.pretrained
from sklearn_mln import ClassicalLoss, MetaLossNetwork, load_meta_loss
from sklearn_mln._losses._file import FORMAT_NAME, FORMAT_VERSIONS
from sklearn_mln._losses._kernels import ACTIVATIONS_AND_SLOPES
from sklearn_mln._losses._meta_loss import (
    ACTIVATIONS,
    DEFAULT_PROGRESS,
    DEFAULT_SHOTS,
    INPUTS,
    STRUCTURES,
    MetaLossSpec,
    examples_per_class,
    meta_loss_per_sample,
    shots_feature,
)
from sklearn_mln._losses._resolve import frozen_copy, resolve_loss

ALL_SPECS = [
    dict(structure=s, inputs=i, anchor=a)
    for s in STRUCTURES
    for i in INPUTS
    for a in (None, "cross_entropy")
] + [
    dict(structure="per_class", inputs=i, anchor="cross_entropy", true_class_input=True)
    for i in INPUTS
]


def _data(n=16, c=10, seed=0, dtype=torch.float64, scale=3.0):
    gen = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(n, c, generator=gen, dtype=dtype)
    y = torch.randint(0, c, (n,), generator=gen)
    return logits, y


def _randomize(net, seed=0, scale=2.0):
    theta = np.random.RandomState(seed).normal(scale=scale, size=net.n_params)
    return net.set_flat_params(theta)


# --------------------------------------------------------------------------- exact points
@pytest.mark.parametrize("structure", STRUCTURES)
@pytest.mark.parametrize("inputs", INPUTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_anchored_network_is_cross_entropy_at_init(structure, inputs, dtype):
    net = MetaLossNetwork(10, structure=structure, inputs=inputs, random_state=0)
    assert np.any(net.get_flat_params() != 0)  # hidden layers are random, not trivially zero
    logits, y = _data(dtype=dtype)
    z1 = logits.clone().requires_grad_(True)
    z2 = logits.clone().requires_grad_(True)
    per_sample = net.per_sample(z1, y)
    ref_per_sample = F.cross_entropy(z2, y, reduction="none")
    torch.testing.assert_close(per_sample, ref_per_sample, rtol=0, atol=0)  # bit for bit
    value, ref = net(z1, y), F.cross_entropy(z2, y)
    (grad,) = torch.autograd.grad(value, z1)
    (ref_grad,) = torch.autograd.grad(ref, z2)
    # the means differ only in summation order: one ulp at most
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(value, ref, rtol=2 * eps, atol=0)
    torch.testing.assert_close(grad, ref_grad, rtol=2 * eps, atol=2 * eps)


@pytest.mark.parametrize("n_classes, smoothing", [(2, 0.05), (10, 0.1), (7, 0.3)])
def test_from_label_smoothing_is_torch_label_smoothing(n_classes, smoothing):
    net = MetaLossNetwork.from_label_smoothing(n_classes, smoothing, random_state=0)
    logits, y = _data(c=n_classes)
    z1 = logits.clone().requires_grad_(True)
    z2 = logits.clone().requires_grad_(True)
    value = net(z1, y)
    ref = F.cross_entropy(z2, y, label_smoothing=smoothing)
    torch.testing.assert_close(value, ref)
    torch.testing.assert_close(torch.autograd.grad(value, z1)[0], torch.autograd.grad(ref, z2)[0])


def test_from_label_smoothing_rejects_other_parametrisations():
    with pytest.raises(ValueError, match="exact point only"):
        MetaLossNetwork.from_label_smoothing(10, 0.1, inputs="probs")


# --------------------------------------------------------------------------- properties
@pytest.mark.parametrize("kwargs", ALL_SPECS, ids=lambda d: "-".join(map(str, d.values())))
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_outputs_are_non_negative_for_random_parameters(kwargs, activation):
    net = MetaLossNetwork(6, hidden_sizes=(5, 3), activation=activation, **kwargs)
    for seed in range(5):
        _randomize(net, seed=seed, scale=3.0)
        logits, y = _data(n=64, c=6, seed=seed, scale=5.0)
        per_sample = net.per_sample(logits, y)
        assert per_sample.shape == (64,)
        assert torch.all(per_sample >= 0) and torch.all(torch.isfinite(per_sample))


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n_classes=st.integers(2, 12),
    scale=st.floats(0.01, 10.0),
    spec=st.sampled_from(ALL_SPECS),
)
def test_non_negative_property(seed, n_classes, scale, spec):
    net = _randomize(MetaLossNetwork(n_classes, **spec), seed=seed % 1000, scale=scale)
    logits, y = _data(n=8, c=n_classes, seed=seed, scale=scale * 3)
    assert torch.all(net.per_sample(logits, y) >= 0)


@pytest.mark.parametrize("n_classes", [2, 3, 10, 17])
def test_per_class_works_for_any_number_of_classes(n_classes):
    net = _randomize(MetaLossNetwork(10, structure="per_class", random_state=0))
    logits, y = _data(c=n_classes)
    value = net(logits, y)
    assert value.ndim == 0 and torch.isfinite(value)


def test_joint_raises_clear_error_on_wrong_number_of_classes():
    net = MetaLossNetwork(10, structure="joint", random_state=0)
    assert torch.isfinite(net(*_data(c=10)))
    with pytest.raises(ValueError, match="built for 10 classes, got logits with 5 columns"):
        net(*_data(c=5))


def test_forward_checks_shapes():
    net = MetaLossNetwork(random_state=0)
    logits, y = _data()
    with pytest.raises(ValueError, match=r"Expected logits \(n, C\)"):
        net(logits, y[:-1])
    with pytest.raises(ValueError, match=r"Expected logits \(n, C\)"):
        net(logits[None], y)


def test_gradient_flows_to_parameters_when_not_frozen():
    net = _randomize(MetaLossNetwork(10, anchor=None, random_state=0), scale=0.5)
    net(*_data()).backward()
    assert net.theta.grad is not None and torch.any(net.theta.grad != 0)


# --------------------------------------------------------------------------- spec and params
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"structure": "tree"}, "structure must be"),
        ({"inputs": "odds"}, "inputs must be"),
        ({"anchor": "mse"}, "anchor must be"),
        ({"activation": "swish"}, "activation must be"),
        ({"n_classes": 1}, "n_classes must be"),
        ({"structure": "joint"}, "needs n_classes"),
        ({"hidden_sizes": (4, 0)}, "hidden_sizes must be"),
        ({"structure": "joint", "n_classes": 3, "true_class_input": True}, "already sees"),
        ({"true_class_input": "yes"}, "must be a bool"),
    ],
)
def test_spec_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MetaLossSpec(**kwargs)


def test_n_params_matches_layer_shapes():
    spec = MetaLossSpec(structure="joint", n_classes=4, hidden_sizes=(3, 2))
    # 2 linear + (3*8 + 3) + (2*3 + 2) + (1*2 + 1)
    assert spec.n_params == 2 + 27 + 8 + 3
    assert MetaLossNetwork(random_state=0).n_params == 35


def test_flat_params_round_trip():
    net = MetaLossNetwork(10, hidden_sizes=(4, 3), random_state=0)
    theta = np.random.RandomState(1).normal(size=net.n_params)
    net.set_flat_params(theta)
    out = net.get_flat_params()
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, theta)
    out[0] = 123.0  # a copy
    assert net.get_flat_params()[0] == theta[0]


@pytest.mark.parametrize(
    "vector, match",
    [
        (np.zeros(34), r"shape \(35,\)"),
        (np.zeros((35, 1)), r"shape \(35,\)"),
        (np.r_[np.zeros(34), np.nan], "finite"),
        (np.r_[np.zeros(34), np.inf], "finite"),
    ],
)
def test_set_flat_params_errors(vector, match):
    net = MetaLossNetwork(random_state=0)
    before = net.get_flat_params()
    with pytest.raises(ValueError, match=match):
        net.set_flat_params(vector)
    np.testing.assert_array_equal(net.get_flat_params(), before)


# --------------------------------------------------------------------------- population form
@pytest.mark.parametrize("kwargs", ALL_SPECS, ids=lambda d: "-".join(map(str, d.values())))
@pytest.mark.parametrize("y_per_member", [False, True])
def test_population_rows_equal_single_networks(kwargs, y_per_member):
    n_pop, n, c = 5, 12, 4
    spec = MetaLossSpec(n_classes=c, hidden_sizes=(6, 3), **kwargs)
    rng = np.random.RandomState(0)
    theta = torch.as_tensor(rng.normal(size=(n_pop, spec.n_params)))
    gen = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(n_pop, n, c, generator=gen, dtype=torch.float64)
    y = torch.randint(0, c, (n_pop, n) if y_per_member else (n,), generator=gen)
    out = meta_loss_per_sample(theta, logits, y, spec)
    assert out.shape == (n_pop, n)
    for p in range(n_pop):
        single = MetaLossNetwork.from_spec(spec, theta[p].numpy())
        y_p = y[p] if y_per_member else y
        torch.testing.assert_close(out[p], single.per_sample(logits[p], y_p))
        torch.testing.assert_close(out[p].mean(), single(logits[p], y_p))


def test_per_sample_leading_dimensions():
    net = _randomize(MetaLossNetwork(4, random_state=0))
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 7, 4, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 4, (7,), generator=gen)
    out = net.per_sample(logits, y)
    assert out.shape == (2, 3, 7)
    torch.testing.assert_close(out[1, 2], net.per_sample(logits[1, 2], y))


# --------------------------------------------------------------------------- save / load
def test_save_load_round_trip(tmp_path):
    net = _randomize(
        MetaLossNetwork(7, structure="joint", hidden_sizes=(5, 2), activation="relu", anchor=None)
    )
    net.metadata = {"fitness": 0.83, "seed": 3, "note": "evolved"}
    path = tmp_path / "sub" / "loss.mln"
    net.save(path)
    loaded = load_meta_loss(path)
    assert loaded.spec == net.spec
    np.testing.assert_array_equal(loaded.get_flat_params(), net.get_flat_params())
    assert loaded.metadata == net.metadata
    logits, y = _data(c=7)
    torch.testing.assert_close(loaded(logits, y), net(logits, y), rtol=0, atol=0)
    assert [p.name for p in path.parent.iterdir()] == ["loss.mln"]  # no temp file left
    assert load_meta_loss(str(path)).spec == net.spec


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="No meta-loss file"):
        load_meta_loss(tmp_path / "missing.mln")


def _write_npz(path, header, theta):
    buffer = io.BytesIO()
    np.savez(buffer, theta=theta, header=np.array(json.dumps(header)))
    path.write_bytes(buffer.getvalue())


def _header(**overrides):
    spec = MetaLossSpec()
    header = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSIONS[0],
        "package_version": "0.1.0",
        "spec": spec.to_dict(),
        "n_params": spec.n_params,
        "metadata": {},
    }
    return {**header, **overrides}


def test_hand_written_valid_file_loads(tmp_path):
    path = tmp_path / "ok.mln"
    _write_npz(path, _header(), np.arange(35.0) / 100)
    np.testing.assert_array_equal(load_meta_loss(path).get_flat_params(), np.arange(35.0) / 100)


@pytest.mark.parametrize(
    "header, theta, match",
    [
        (_header(format="other"), np.zeros(35), "is not a sklearn-mln-meta-loss file"),
        (_header(format_version=99), np.zeros(35), "format version 99"),
        (_header(), np.zeros(34), r"architecture needs \(35,\)"),
        (_header(spec={"bogus": 1}), np.zeros(35), "invalid architecture"),
        (_header(spec={"hidden_sizes": [8], "structure": "tree"}), np.zeros(35), "structure"),
        (["not", "a", "dict"], np.zeros(35), "is not a sklearn-mln-meta-loss file"),
        (_header(), np.r_[np.zeros(34), np.nan], "finite"),
    ],
)
def test_load_rejects_bad_headers_and_weights(tmp_path, header, theta, match):
    path = tmp_path / "bad.mln"
    _write_npz(path, header, theta)
    with pytest.raises(ValueError, match=match):
        load_meta_loss(path)


def test_load_rejects_truncated_files(tmp_path):
    good = tmp_path / "good.mln"
    MetaLossNetwork(random_state=0).save(good)
    data = good.read_bytes()
    bad = tmp_path / "bad.mln"
    for cut in (0, 1, 10, len(data) // 3, len(data) // 2, len(data) - 1):
        bad.write_bytes(data[:cut])
        with pytest.raises(ValueError, match="not a readable meta-loss file"):
            load_meta_loss(bad)


def test_load_rejects_corrupt_files(tmp_path):
    good = tmp_path / "good.mln"
    net = MetaLossNetwork(random_state=0)
    net.metadata = {"a": 1}
    net.save(good)
    data = good.read_bytes()
    bad = tmp_path / "bad.mln"
    rng = np.random.RandomState(0)
    for _ in range(300):
        corrupt = bytearray(data)
        for pos in rng.randint(len(corrupt), size=rng.randint(1, 6)):
            corrupt[pos] = rng.randint(256)
        bad.write_bytes(bytes(corrupt))
        try:
            loaded = load_meta_loss(bad)
        except ValueError:
            continue
        # bytes the zip format does not check (padding, ...) may change: never the content
        np.testing.assert_array_equal(loaded.get_flat_params(), net.get_flat_params())
        assert loaded.metadata == net.metadata and loaded.spec == net.spec


@pytest.mark.parametrize(
    "content",
    [
        b"hello, not a meta-loss",
        b"",
        "npy",  # a bare .npy array
        "zip",  # a zip without the expected members
        "pickle",  # an npz holding an object array
    ],
)
def test_load_rejects_wrong_formats(tmp_path, content):
    path = tmp_path / "wrong.mln"
    if content == "npy":
        with open(path, "wb") as f:
            np.save(f, np.zeros(35))
    elif content == "zip":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("readme.txt", "hi")
    elif content == "pickle":
        with open(path, "wb") as f:
            np.savez(f, theta=np.zeros(35), header=np.array([{"a": 1}], dtype=object))
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match="not a readable meta-loss file"):
        load_meta_loss(path)


def test_failed_save_leaves_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "loss.mln"
    old = MetaLossNetwork(random_state=0)
    old.save(path)
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        _randomize(MetaLossNetwork(random_state=1)).save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["loss.mln"]  # temp file removed
    np.testing.assert_array_equal(load_meta_loss(path).get_flat_params(), old.get_flat_params())


# --------------------------------------------------------------------------- classical losses
def test_classical_cross_entropy_matches_torch():
    logits, y = _data()
    torch.testing.assert_close(
        ClassicalLoss("cross_entropy")(logits, y), F.cross_entropy(logits, y)
    )
    torch.testing.assert_close(
        ClassicalLoss().per_sample(logits, y), F.cross_entropy(logits, y, reduction="none")
    )


def test_classical_mse_is_squared_distance_of_softmax_to_onehot():
    logits, y = _data()
    expected = ((logits.softmax(-1) - F.one_hot(y, 10).double()) ** 2).sum(-1)
    torch.testing.assert_close(ClassicalLoss("mse").per_sample(logits, y), expected)
    torch.testing.assert_close(ClassicalLoss("mse")(logits, y), expected.mean())


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.25])
def test_classical_label_smoothing_matches_torch(smoothing):
    logits, y = _data()
    loss = ClassicalLoss("label_smoothing", smoothing=smoothing)
    torch.testing.assert_close(
        loss(logits, y), F.cross_entropy(logits, y, label_smoothing=smoothing)
    )
    default = ClassicalLoss("label_smoothing")
    torch.testing.assert_close(default(logits, y), F.cross_entropy(logits, y, label_smoothing=0.1))


def test_classical_focal():
    logits, y = _data()
    torch.testing.assert_close(
        ClassicalLoss("focal", gamma=0.0)(logits, y), F.cross_entropy(logits, y)
    )
    p_true = logits.softmax(-1)[torch.arange(len(y)), y]
    expected = -((1 - p_true) ** 2) * torch.log(p_true)
    torch.testing.assert_close(ClassicalLoss("focal").per_sample(logits, y), expected)


def test_classical_population_shape():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 4, generator=gen)
    y = torch.randint(0, 4, (5,), generator=gen)
    out = ClassicalLoss("label_smoothing").per_sample(logits, y)
    assert out.shape == (3, 5)
    torch.testing.assert_close(out[1], ClassicalLoss("label_smoothing").per_sample(logits[1], y))


@pytest.mark.parametrize(
    "args, kwargs, match",
    [(("hinge",), {}, "Unknown loss 'hinge'"), (("mse",), {"gamma": 2.0}, "takes")],
)
def test_classical_loss_errors(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ClassicalLoss(*args, **kwargs)


# --------------------------------------------------------------------------- resolve_loss
@pytest.mark.parametrize("name", ["cross_entropy", "mse", "label_smoothing", "focal"])
def test_resolve_names(name):
    loss = resolve_loss(name)
    assert isinstance(loss, ClassicalLoss) and loss.name == name


def test_resolve_modules_are_frozen_copies():
    net = _randomize(MetaLossNetwork(10, random_state=0))
    loss = resolve_loss(net)
    assert isinstance(loss, MetaLossNetwork) and loss is not net
    assert not loss.theta.requires_grad and net.theta.requires_grad
    assert loss.theta.data_ptr() != net.theta.data_ptr()
    np.testing.assert_array_equal(loss.get_flat_params(), net.get_flat_params())
    classical = ClassicalLoss("focal", gamma=1.0)
    resolved = resolve_loss(classical)
    assert resolved is not classical and resolved.params == {"gamma": 1.0}


def test_frozen_copy():
    net = MetaLossNetwork(10, random_state=0)
    frozen = frozen_copy(net)
    assert frozen is not net
    assert all(not p.requires_grad for p in frozen.parameters())
    assert all(p.requires_grad for p in net.parameters())
    with torch.no_grad():
        frozen.theta.add_(1.0)
    assert not np.array_equal(frozen.get_flat_params(), net.get_flat_params())


def test_resolve_paths(tmp_path):
    net = _randomize(MetaLossNetwork(10, random_state=0))
    path = tmp_path / "loss.mln"
    net.save(path)
    for arg in (path, str(path)):
        loss = resolve_loss(arg)
        assert isinstance(loss, MetaLossNetwork) and not loss.theta.requires_grad
        np.testing.assert_array_equal(loss.get_flat_params(), net.get_flat_params())


def test_resolve_pretrained_name(tmp_path, monkeypatch):
    net = _randomize(MetaLossNetwork(10, random_state=0))
    net.save(tmp_path / "tiny.mln")
    monkeypatch.setattr(sklearn_mln.pretrained, "PRETRAINED", {"tiny": str(tmp_path / "tiny.mln")})
    loss = resolve_loss("tiny")
    np.testing.assert_array_equal(loss.get_flat_params(), net.get_flat_params())
    assert not loss.theta.requires_grad


def test_resolve_fitted_evolver_like():
    class Fitted:
        meta_loss_ = MetaLossNetwork(10, random_state=0)

    loss = resolve_loss(Fitted())
    assert loss is not Fitted.meta_loss_ and not loss.theta.requires_grad


def test_resolve_errors(tmp_path):
    with pytest.raises(ValueError, match="neither a classical loss"):
        resolve_loss("hinge")
    with pytest.raises(ValueError, match="nor an existing file"):
        resolve_loss(tmp_path / "missing.mln")
    with pytest.raises(TypeError, match="MetaLossNetwork or ClassicalLoss"):
        resolve_loss(torch.nn.CrossEntropyLoss())
    with pytest.raises(TypeError, match="meta_loss must be a loss name"):
        resolve_loss(3.0)

    class Unfitted:
        def fit(self, X, y):
            return self

        def get_params(self, deep=True):
            return {}

    with pytest.raises(ValueError, match="not fitted"):
        resolve_loss(Unfitted())


@pytest.mark.parametrize(
    "text, name, params",
    [
        ("label_smoothing(smoothing=0.9)", "label_smoothing", {"smoothing": 0.9}),
        ("focal(gamma=1.5)", "focal", {"gamma": 1.5}),
        (" poly1( epsilon = -1 ) ", "poly1", {"epsilon": -1.0}),
        ("focal(gamma=2e-1)", "focal", {"gamma": 0.2}),
        ("label_smoothing()", "label_smoothing", {"smoothing": 0.1}),
        ("mse()", "mse", {}),
    ],
)
def test_resolve_parameterised_classical_names(text, name, params):
    loss = resolve_loss(text)
    assert isinstance(loss, ClassicalLoss) and loss.name == name and loss.params == params
    assert all(type(v) is float for v in loss.params.values())
    logits, y = _data()
    direct = ClassicalLoss(name, **params)
    torch.testing.assert_close(loss(logits, y), direct(logits, y), rtol=0, atol=0)


@pytest.mark.parametrize(
    "text, match",
    [
        ("hinge(margin=1)", "'hinge' is none of the classical losses"),
        ("focal(alpha=1)", r"'focal' takes \['gamma'\], not 'alpha'"),
        ("cross_entropy(smoothing=0.1)", r"takes \[\], not 'smoothing'"),
        ("focal(gamma=1, gamma=2)", "'gamma' is given twice"),
        ("focal(gamma=abc)", "gamma='abc' is not a number"),
        ("focal(gamma=nan)", "not a number"),
        ("focal(gamma=inf)", "not a number"),
        ("focal(gamma=(1))", "not a number"),
        ("focal(gamma=1_0)", "not a number"),
        ("focal(gamma=1,)", "expected keyword=number"),
        ("focal(2)", "expected keyword=number"),
        ("focal(=2)", "expected keyword=number"),
        ("label_smoothing(smoothing=0.9", "neither a classical loss"),
    ],
)
def test_resolve_parameterised_names_strictly(text, match):
    with pytest.raises(ValueError, match=match) as error:
        resolve_loss(text)
    if "neither" not in match:
        assert "label_smoothing(smoothing=0.2)" in str(error.value)  # how to write it


def test_an_existing_file_wins_over_a_parameterised_name(tmp_path, monkeypatch):
    net = _randomize(MetaLossNetwork(10, random_state=0))
    net.save(tmp_path / "focal(gamma=2)")
    monkeypatch.chdir(tmp_path)
    loss = resolve_loss("focal(gamma=2)")
    np.testing.assert_array_equal(loss.get_flat_params(), net.get_flat_params())


# --------------------------------------------------------------------------- inner-loop kernels
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("hidden_sizes", [(), (8,), (6, 4)])
@pytest.mark.parametrize("inputs", INPUTS)
@pytest.mark.parametrize("anchor", [None, "cross_entropy"])
def test_fast_kernels_match_autograd(activation, hidden_sizes, inputs, anchor):
    """The inner loop's kernels give the plain path's losses and input gradients."""
    spec = MetaLossSpec("per_class", 10, hidden_sizes, activation, inputs, anchor)
    theta = torch.as_tensor(np.random.RandomState(1).normal(size=(3, spec.n_params)))
    logits = 3.0 * torch.randn(3, 16, 10, dtype=torch.float64, generator=torch.Generator())
    y = torch.randint(0, 10, (16,))
    z_fast = logits.clone().requires_grad_(True)
    z_plain = logits.clone().requires_grad_(True)
    fast = meta_loss_per_sample(theta, z_fast, y, spec, fast=True)
    plain = meta_loss_per_sample(theta, z_plain, y, spec)
    torch.testing.assert_close(fast, plain, rtol=1e-12, atol=1e-12)
    weights = torch.rand(3, 16, dtype=torch.float64)  # a non-uniform upstream gradient
    (grad_fast,) = torch.autograd.grad((fast * weights).sum(), z_fast)
    (grad_plain,) = torch.autograd.grad((plain * weights).sum(), z_plain)
    torch.testing.assert_close(grad_fast, grad_plain, rtol=1e-10, atol=1e-10)


def test_every_activation_has_a_fast_kernel():
    assert set(ACTIVATIONS_AND_SLOPES) == set(ACTIVATIONS)


def test_fast_kernels_keep_the_gradient_of_a_trainable_loss():
    """With ``theta`` requiring a gradient, ``fast=True`` still differentiates through it."""
    spec = MetaLossSpec("per_class", 10, (8,), "tanh", "log_probs", "cross_entropy")
    theta = torch.as_tensor(np.random.RandomState(2).normal(size=(2, spec.n_params)))
    logits = (3.0 * torch.randn(2, 8, 10, dtype=torch.float64)).requires_grad_(True)
    y = torch.randint(0, 10, (8,))
    grads = []
    for fast in (True, False):
        leaf = theta.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(
            meta_loss_per_sample(leaf, logits, y, spec, fast=fast).sum(), leaf
        )
        grads.append(grad)
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-10, atol=1e-10)


# --------------------------------------------------------------------------- true-class input
def test_true_class_input_feeds_each_class_term_the_true_class_prediction():
    c = 5
    net = MetaLossNetwork(
        c, hidden_sizes=(1,), activation="softplus", anchor=None, true_class_input=True
    )
    # linear term 0; hidden unit = softplus(q_y) (weights on [q_c, y_c, q_y]); output 2h - 1
    net.set_flat_params([0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 2.0, -1.0])
    logits, y = _data(c=c)
    q_y = F.log_softmax(logits, -1).gather(1, y[:, None])[:, 0]
    expected = F.softplus(c * (2 * F.softplus(q_y) - 1))  # the same term for every class
    torch.testing.assert_close(net.per_sample(logits, y), expected)


@pytest.mark.parametrize("inputs", INPUTS)
def test_true_class_network_starts_as_cross_entropy_and_trains_in_fast_kernels(inputs):
    net = MetaLossNetwork(10, inputs=inputs, true_class_input=True, random_state=0)
    logits, y = _data()
    torch.testing.assert_close(
        net.per_sample(logits, y), F.cross_entropy(logits, y, reduction="none"), rtol=0, atol=0
    )
    theta = torch.as_tensor(np.random.RandomState(1).normal(size=(2, net.n_params)))
    z = logits.expand(2, -1, -1).clone().requires_grad_(True)
    fast = meta_loss_per_sample(theta, z, y, net.spec, fast=True)
    (fast_grad,) = torch.autograd.grad(fast.sum(), z)
    z2 = z.detach().clone().requires_grad_(True)
    slow = meta_loss_per_sample(theta, z2, y, net.spec)
    (slow_grad,) = torch.autograd.grad(slow.sum(), z2)
    torch.testing.assert_close(fast, slow)
    torch.testing.assert_close(fast_grad, slow_grad)


def test_file_version_is_the_lowest_that_holds_the_architecture(tmp_path):
    versions = {}
    for true_class_input in (False, True):
        net = _randomize(MetaLossNetwork(4, true_class_input=true_class_input))
        path = tmp_path / f"{true_class_input}.mln"
        net.save(path)
        with np.load(path, allow_pickle=False) as archive:
            header = json.loads(str(archive["header"]))
        versions[true_class_input] = header["format_version"]
        assert ("true_class_input" in header["spec"]) == true_class_input
        loaded = load_meta_loss(path)
        assert loaded.spec == net.spec
        logits, y = _data(c=4)
        torch.testing.assert_close(loaded(logits, y), net(logits, y), rtol=0, atol=0)
    assert versions == {False: 1, True: 2}


# --------------------------------------------------------------------------- progress input
@pytest.mark.parametrize("structure", STRUCTURES)
def test_progress_input_is_seen_and_defaults_to_the_end_of_training(structure):
    net = _randomize(
        MetaLossNetwork(4, structure=structure, progress_input=True, anchor=None), scale=1.0
    )
    assert net.n_params == MetaLossNetwork(4, structure=structure).n_params + 8  # 8 hidden
    logits, y = _data(c=4)
    values = {}
    for progress in (None, DEFAULT_PROGRESS, 0.0, 0.5):
        net.progress = progress
        values[progress] = net.per_sample(logits, y)
    torch.testing.assert_close(values[None], values[DEFAULT_PROGRESS], rtol=0, atol=0)
    assert not torch.allclose(values[0.0], values[0.5])
    anchored = MetaLossNetwork(4, structure=structure, progress_input=True, random_state=0)
    anchored.progress = 0.3
    torch.testing.assert_close(
        anchored.per_sample(logits, y), F.cross_entropy(logits, y, reduction="none")
    )
    path_net = _randomize(MetaLossNetwork(4, progress_input=True))
    assert "progress_input=True" in repr(path_net)


# --------------------------------------------------------------------------- shots input
@pytest.mark.parametrize("structure", STRUCTURES)
def test_shots_input_is_seen_and_defaults_to_ten_per_class(structure):
    net = _randomize(
        MetaLossNetwork(4, structure=structure, shots_input=True, anchor=None), scale=1.0
    )
    assert net.n_params == MetaLossNetwork(4, structure=structure).n_params + 8  # 8 hidden
    logits, y = _data(c=4)
    values = {}
    for shots in (None, DEFAULT_SHOTS, 1, 50):
        net.shots = shots
        values[shots] = net.per_sample(logits, y)
    torch.testing.assert_close(values[None], values[DEFAULT_SHOTS], rtol=0, atol=0)
    assert not torch.allclose(values[1], values[50])
    anchored = MetaLossNetwork(4, structure=structure, shots_input=True, random_state=0)
    anchored.shots = 3
    torch.testing.assert_close(
        anchored.per_sample(logits, y), F.cross_entropy(logits, y, reduction="none")
    )
    assert "shots_input=True" in repr(net)


def test_shots_feature_and_examples_per_class():
    assert [round(shots_feature(k), 2) for k in (1, 5, 10, 20, 50)] == [1, 0.45, 0.32, 0.22, 0.14]
    for bad in (0, -1, float("nan")):
        with pytest.raises(ValueError, match="must be positive"):
            shots_feature(bad)
    y = np.repeat([3, 5, 7], 4)
    assert examples_per_class(y) == 4.0
    assert examples_per_class(torch.as_tensor(y)) == 4.0
    assert examples_per_class([0, 0, 1]) == 1.5  # unbalanced: the mean


def test_a_shots_input_loss_is_saved_as_version_3_and_older_files_still_load(tmp_path):
    net = _randomize(MetaLossNetwork(4, shots_input=True, progress_input=True))
    net.save(tmp_path / "told.mln")
    with np.load(tmp_path / "told.mln", allow_pickle=False) as archive:
        assert json.loads(str(archive["header"]))["format_version"] == 3
    loaded = load_meta_loss(tmp_path / "told.mln")
    assert loaded.spec == net.spec and loaded.spec.shots_input
    logits, y = _data(c=4)
    for shots in (None, 2):
        net.shots = loaded.shots = shots
        torch.testing.assert_close(loaded(logits, y), net(logits, y), rtol=0, atol=0)
    assert 3 in FORMAT_VERSIONS and sklearn_mln.pretrained.load_pretrained("fashion-mnist")
