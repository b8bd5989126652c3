"""Bad input, tried systematically: every case gets a clear exception, fast, and no half file.

Property-based (hypothesis) over the estimators, ``load_meta_loss`` and the data loaders,
with small example counts so the file runs in well under two minutes.
"""

import gzip
import io
import json
import os
import pickle
import pickletools
import tempfile
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from _helpers import TINY_EVOLVER
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.exceptions import NotFittedError

from sklearn_mln import MetaLossNetwork, MLNClassifier, MLNEvolver, load_meta_loss
from sklearn_mln.datasets import _loaders as datasets_module
from sklearn_mln.datasets import load_cifar10, load_fashion_mnist

SETTINGS = settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ESTIMATORS = {
    "evolver": lambda: MLNEvolver(**TINY_EVOLVER),
    "classifier": lambda: MLNClassifier(max_epochs=2, random_state=0),
}
pytestmark = pytest.mark.timeout(60)  # nothing may hang


def _expect(exc, match, call, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. DataConversionWarning; the error is the point
        with pytest.raises(exc, match=match):
            call(*args)


# ----------------------------------------------------------------------------- fit
#: corruption -> (expected error type, message pattern)
FIT_ERRORS = {
    "nan": (ValueError, "Input X contains NaN"),
    "inf": (ValueError, "Input X contains infinity"),
    "empty": (ValueError, r"0 sample\(s\)"),
    "no features": (ValueError, r"0 feature\(s\)"),
    "1-D X": (ValueError, "Expected 2D array, got 1D array"),
    "3-D or 5-D X": (ValueError, r"2-D \(n_samples, n_features\) or 4-D"),
    "lengths": (ValueError, "inconsistent numbers of samples"),
    "str features": (ValueError, "could not convert string to float"),
    "complex features": (ValueError, "Complex data not supported"),
    "single class": (ValueError, "at least (2|two) classes"),
    "nan label": (ValueError, "Input y contains NaN"),
    "continuous labels": (ValueError, "Unknown label type: continuous"),
    "2-D labels": (ValueError, "y should be a 1d array"),
    "no labels": (ValueError, "requires y to be passed"),
}


@st.composite
def bad_pools(draw):
    """A small valid pool, then one corruption at a drawn place."""
    n = draw(st.integers(12, 40))
    d = draw(st.integers(1, 5))
    n_classes = draw(st.integers(2, 3))
    X = np.asarray(draw(st.lists(st.floats(0, 1), min_size=n * d, max_size=n * d)))
    X = X.reshape(n, d).astype(np.float32)
    y = np.arange(n) % n_classes
    i, j = draw(st.integers(0, n - 1)), draw(st.integers(0, d - 1))
    kind = draw(st.sampled_from(sorted(FIT_ERRORS)))
    if kind == "nan":
        X[i, j] = np.nan
    elif kind == "inf":
        X[i, j] = draw(st.sampled_from([np.inf, -np.inf]))
    elif kind == "empty":
        X, y = X[:0], y[:0]
    elif kind == "no features":
        X = X[:, :0]
    elif kind == "1-D X":
        X = X[:, 0]
    elif kind == "3-D or 5-D X":
        X = X.reshape(n, d, 1) if draw(st.booleans()) else X.reshape(n, 1, 1, d, 1)
    elif kind == "lengths":
        y = y[: n - draw(st.integers(1, n - 1))] if draw(st.booleans()) else np.r_[y, y[:3]]
    elif kind == "str features":
        X = X.astype(object)
        X[i, j] = draw(st.sampled_from(["abc", "", "1,5", "nan?", "x1"]))
    elif kind == "complex features":
        X = X.astype(complex)
    elif kind == "single class":
        y = np.full(n, draw(st.sampled_from([0, 7, "a"])))
    elif kind == "nan label":
        y = y.astype(float)
        y[i] = np.nan
    elif kind == "continuous labels":
        y = np.linspace(0, 1, n) + 0.001
    elif kind == "2-D labels":
        y = np.c_[y, y]
    elif kind == "no labels":
        y = None
    return kind, X, y


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
@SETTINGS
@given(case=bad_pools())
def test_fit_rejects_bad_pools(name, case):
    kind, X, y = case
    exc, match = FIT_ERRORS[kind]
    _expect(exc, match, lambda: ESTIMATORS[name]().fit(X, y))


@SETTINGS
@given(n_shots=st.integers(2, 12), data=st.data())
def test_evolver_rejects_classes_smaller_than_the_shots(n_shots, data):
    # every class needs n_shots + 1 samples (n_shots for tasks, one for validation)
    counts = [n_shots + 5, n_shots + 1 - data.draw(st.integers(1, n_shots))]
    y = np.repeat([0, 1], counts)
    X = np.random.RandomState(0).rand(len(y), 3)
    _expect(
        ValueError,
        rf"at least n_shots \+ 1 = {n_shots + 1} samples.*class 1 has {counts[1]}\.",
        lambda: MLNEvolver(**{**TINY_EVOLVER, "n_shots": n_shots}).fit(X, y),
    )


@pytest.mark.parametrize(
    "params, match",
    [
        ({"n_ways": 4}, "n_ways=4 exceeds the 3 classes"),
        ({"n_shots": 5, "validation_size": 0.9}, "lower validation_size or n_shots"),
        ({"checkpoint_path": 3}, "'checkpoint_path' parameter of MLNEvolver must be"),
        ({"popsize": 1}, "'popsize' parameter of MLNEvolver must be"),
        ({"init": "nonsense"}, "init='nonsense' is not a starting point"),
    ],
)
def test_evolver_rejects_impossible_settings(params, match):
    y = np.repeat([0, 1, 2], 12)
    X = np.random.RandomState(0).rand(len(y), 3)
    _expect(ValueError, match, lambda: MLNEvolver(**{**TINY_EVOLVER, **params}).fit(X, y))


# ----------------------------------------------------------------------------- predict / score
@pytest.fixture(scope="module")
def fitted(digits_flat):
    X, y = digits_flat
    evolver = MLNEvolver(**{**TINY_EVOLVER, "n_shots": 3}).fit(X[:200], y[:200])
    classifier = MLNClassifier(max_epochs=5, random_state=0).fit(X[:200], y[:200])
    return evolver, classifier


SCORE_ERRORS = {
    "unseen labels": (ValueError, "labels unseen during fit"),
    "string labels": (ValueError, "labels unseen during fit"),
    "a class missing": (ValueError, r"class \d has 0\."),
    "fewer than shots": (ValueError, r"at least n_shots \+ 1 = 4 samples to score"),
    "nan": (ValueError, "Input X contains NaN"),
    "wrong features": (ValueError, "is expecting 64 features"),
    "image shape": (ValueError, r"samples of shape \(64,\), got \(1, 8, 8\)"),
    "empty": (ValueError, r"0 sample\(s\)"),
    "lengths": (ValueError, "inconsistent numbers of samples"),
}


@SETTINGS
@given(kind=st.sampled_from(sorted(SCORE_ERRORS)), offset=st.integers(10, 1000), data=st.data())
def test_evolver_score_rejects_bad_input(fitted, digits_flat, kind, offset, data):
    X, y = digits_flat[0][200:500].copy(), digits_flat[1][200:500].copy()
    i = data.draw(st.integers(0, len(y) - 1))
    if kind == "unseen labels":
        y[i] = offset
    elif kind == "string labels":
        y = y.astype(str)
    elif kind == "a class missing":
        keep = y != data.draw(st.integers(0, 9))
        X, y = X[keep], y[keep]
    elif kind == "fewer than shots":
        n = data.draw(st.integers(1, 25))
        X, y = X[:n], y[:n]
    elif kind == "nan":
        X[i, i % 64] = np.nan
    elif kind == "wrong features":
        X = X[:, : data.draw(st.integers(1, 63))]
    elif kind == "image shape":
        X = X.reshape(-1, 1, 8, 8)
    elif kind == "empty":
        X, y = X[:0], y[:0]
    elif kind == "lengths":
        y = y[:-1]
    exc, match = SCORE_ERRORS[kind]
    _expect(exc, match, lambda: fitted[0].score(X, y))


@SETTINGS
@given(
    kind=st.sampled_from(["nan", "wrong features", "1-D", "empty", "words", "image shape"]),
    data=st.data(),
)
def test_classifier_predict_rejects_bad_input(fitted, digits_flat, kind, data):
    X = digits_flat[0][200:260].copy()
    i = data.draw(st.integers(0, len(X) - 1))
    expected = {
        "nan": "Input X contains NaN",
        "wrong features": "is expecting 64 features",
        "1-D": "got an array of shape",
        "empty": r"0 sample\(s\)",
        "words": "could not convert string to float",
        "image shape": r"samples of shape \(64,\), got \(1, 8, 8\)",
    }[kind]
    if kind == "nan":
        X[i, i % 64] = np.nan
    elif kind == "wrong features":
        X = X[:, : data.draw(st.integers(1, 63))]
    elif kind == "1-D":
        X = X[i]
    elif kind == "empty":
        X = X[:0]
    elif kind == "words":
        X = X.astype(object)
        X[i, 0] = "pixel"
    elif kind == "image shape":
        X = X.reshape(-1, 1, 8, 8)
    method = data.draw(st.sampled_from(["predict", "predict_proba"]))
    _expect(ValueError, expected, lambda: getattr(fitted[1], method)(X))


@SETTINGS
@given(n_unseen=st.integers(1, 50), offset=st.integers(10, 1000))
def test_classifier_score_counts_unseen_labels_as_errors(fitted, digits_flat, n_unseen, offset):
    # scikit-learn's convention for classifiers: accuracy, not an exception
    X, y = digits_flat[0][200:300], digits_flat[1][200:300].copy()
    y[:n_unseen] += offset
    score = fitted[1].score(X, y)
    assert 0.0 <= score <= (100 - n_unseen) / 100


def test_unfitted_estimators_say_so(digits_flat):
    X, y = digits_flat
    with pytest.raises(NotFittedError):
        MLNEvolver().score(X, y)
    with pytest.raises(NotFittedError):
        MLNClassifier().predict(X)


# ----------------------------------------------------------------------------- load_meta_loss
@pytest.fixture(scope="module")
def saved_loss(tmp_path_factory):
    path = tmp_path_factory.mktemp("loss") / "loss.mln"
    MetaLossNetwork(10, random_state=0).save(path)
    return path.read_bytes()


def _write(folder, name, content) -> Path:
    path = Path(folder) / name
    path.write_bytes(content)
    return path


@SETTINGS
@given(cut=st.floats(0, 1, exclude_max=True))
def test_load_meta_loss_rejects_truncated_files(saved_loss, cut):
    with tempfile.TemporaryDirectory() as folder:
        path = _write(folder, "loss.mln", saved_loss[: int(cut * len(saved_loss))])
        _expect(ValueError, "not a readable meta-loss file", lambda: load_meta_loss(path))


@settings(SETTINGS, max_examples=40)
@given(
    flips=st.lists(
        st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), min_size=1, max_size=4
    )
)
def test_load_meta_loss_on_corrupt_bytes_loads_or_raises_value_error(saved_loss, flips):
    content = bytearray(saved_loss)
    for where, xor in flips:
        content[int(where * len(content))] ^= xor
    with tempfile.TemporaryDirectory() as folder:
        path = _write(folder, "loss.mln", bytes(content))
        try:
            net = load_meta_loss(path)
        except ValueError:
            return
        assert np.isfinite(net.get_flat_params()).all()  # a harmless byte (e.g. a timestamp)


def _npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_load_meta_loss_bad_headers_versions_and_pickles(tmp_path):
    net = MetaLossNetwork(10, random_state=0)
    good = {
        "format": "sklearn-mln-meta-loss",
        "format_version": 1,
        "spec": net.spec.to_dict(),
        "n_params": net.n_params,
        "metadata": {},
    }
    theta = net.get_flat_params()
    marker = tmp_path / "pwned"
    cases = [
        ({**good, "format_version": 4}, theta, "format version 4"),
        ({**good, "format_version": True}, theta, "format version True"),
        ({**good, "format_version": "1"}, theta, "format version '1'"),
        ({**good, "format": "other"}, theta, "is not a sklearn-mln-meta-loss file"),
        ([1, 2], theta, "is not a sklearn-mln-meta-loss file"),
        ({**good, "spec": {**good["spec"], "activation": "exec"}}, theta, "activation"),
        ({**good, "spec": {"structure": "per_class"}}, theta, "invalid architecture"),
        (good, theta[:-1], r"architecture needs \(35,\)"),
        (good, np.full_like(theta, np.nan), "must be finite"),
        (good, np.array([_Payload(marker)], dtype=object), "not a readable meta-loss file"),
    ]
    for header, weights, match in cases:
        content = _npz(header=np.array(json.dumps(header)), theta=weights)
        path = _write(tmp_path, "bad.mln", content)
        _expect(ValueError, match, load_meta_loss, path)
    path = _write(tmp_path, "bad.mln", _npz(theta=theta))
    _expect(ValueError, "not a readable", lambda: load_meta_loss(path))
    path = _write(tmp_path, "bad.mln", pickle.dumps(_Payload(marker)))
    _expect(ValueError, "not a readable", lambda: load_meta_loss(path))
    assert not marker.exists()
    _expect(FileNotFoundError, "No meta-loss file", lambda: load_meta_loss(tmp_path))


def test_failed_saves_leave_no_file(tmp_path):
    net = MetaLossNetwork(10, random_state=0)
    net.metadata = {"not json": object()}
    _expect(TypeError, "not JSON serializable", lambda: net.save(tmp_path / "loss.mln"))
    (tmp_path / "folder.mln").mkdir()
    net.metadata = {}
    _expect(OSError, "", lambda: net.save(tmp_path / "folder.mln"))
    assert sorted(os.listdir(tmp_path)) == ["folder.mln"]
    assert os.listdir(tmp_path / "folder.mln") == []


# ----------------------------------------------------------------------------- data loaders
@pytest.fixture
def isolated(monkeypatch):
    """Loaders look only at the folder a test passes."""
    monkeypatch.delenv("SKLEARN_MLN_DATA", raising=False)
    monkeypatch.setattr(datasets_module, "_FASHION_SYSTEM_DIRS", ())


def _idx(array: np.ndarray, magic: int) -> bytes:
    dims = b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return magic.to_bytes(4, "big") + dims + array.astype(np.uint8).tobytes()


def _fashion_files(n=6, side=4, seed=0):
    rng = np.random.RandomState(seed)
    images = rng.randint(0, 256, size=(n, side, side))
    labels = rng.randint(0, 10, size=n)
    return {
        "t10k-images-idx3-ubyte": _idx(images, 2051),
        "t10k-labels-idx1-ubyte": _idx(labels, 2049),
    }


def _load_fashion(files, compress):
    with tempfile.TemporaryDirectory() as folder:
        for name, content in files.items():
            if compress:
                _write(folder, name + ".gz", gzip.compress(content))
            else:
                _write(folder, name, content)
        return load_fashion_mnist("test", data_home=folder, return_X_y=True)


@SETTINGS
@given(
    which=st.sampled_from(["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]),
    cut=st.floats(0, 1, exclude_max=True),
    compress=st.booleans(),
    gz_cut=st.booleans(),
)
def test_fashion_mnist_truncated_files(isolated, which, cut, compress, gz_cut):
    files = _fashion_files()
    if compress and gz_cut:  # a cut gzip stream
        content = gzip.compress(files[which])
        with tempfile.TemporaryDirectory() as folder:
            for name, data in files.items():
                _write(folder, name + ".gz", gzip.compress(data))
            _write(folder, which + ".gz", content[: int(cut * len(content))])
            _expect(
                ValueError,
                "not a valid gzip file|truncated",
                lambda: load_fashion_mnist("test", data_home=folder),
            )
        return
    files[which] = files[which][: int(cut * len(files[which]))]
    _expect(ValueError, "truncated", lambda: _load_fashion(files, compress))


@settings(SETTINGS, max_examples=30)
@given(
    which=st.sampled_from(["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]),
    where=st.floats(0, 1, exclude_max=True),
    xor=st.integers(1, 255),
    compress=st.booleans(),
)
def test_fashion_mnist_corrupt_bytes_load_or_raise_value_error(
    isolated, which, where, xor, compress
):
    files = _fashion_files()
    content = bytearray(files[which])
    content[int(where * len(content))] ^= xor
    files[which] = bytes(content)
    try:
        X, y = _load_fashion(files, compress)
    except ValueError as exc:
        assert str(exc)  # every message names the file and the problem
        return
    assert len(X) == len(y) and X.dtype == np.float32 and y.max() < 10  # a pixel flipped


def test_fashion_mnist_inconsistent_files(isolated):
    files = _fashion_files()
    cases = [
        ({"t10k-labels-idx1-ubyte": _idx(np.zeros(5), 2049)}, "6 images but .* 5 labels"),
        ({"t10k-labels-idx1-ubyte": _idx(np.full(6, 10), 2049)}, "label 10 out of range"),
        ({"t10k-images-idx3-ubyte": _idx(np.zeros((6, 4, 4)), 2049)}, "bad IDX magic"),
        ({"t10k-images-idx3-ubyte": b"\x00\x00\x08\x03" + b"\xff" * 12}, "truncated or corrupt"),
    ]
    for change, match in cases:
        _expect(ValueError, match, _load_fashion, {**files, **change}, False)
    with tempfile.TemporaryDirectory() as folder:
        _write(folder, "t10k-images-idx3-ubyte.gz", b"this is not gzip")
        _write(folder, "t10k-labels-idx1-ubyte", files["t10k-labels-idx1-ubyte"])
        _expect(
            ValueError, "not a valid gzip", lambda: load_fashion_mnist("test", data_home=folder)
        )
        _expect(FileNotFoundError, "were not found", lambda: load_fashion_mnist(data_home=folder))
        _expect(ValueError, "subset must be", lambda: load_fashion_mnist("valid", data_home=folder))


def _cifar_batch(n=4, seed=0, protocol=2) -> bytes:
    rng = np.random.RandomState(seed)
    batch = {
        b"data": rng.randint(0, 256, size=(n, 3072)).astype(np.uint8),
        b"labels": rng.randint(0, 10, size=n).tolist(),
    }
    return pickle.dumps(batch, protocol=protocol)


def _load_cifar(content):
    with tempfile.TemporaryDirectory() as folder:
        _write(folder, "test_batch", content)
        return load_cifar10("test", data_home=folder, return_X_y=True)


@SETTINGS
@given(cut=st.floats(0, 1, exclude_max=True), protocol=st.sampled_from([2, 4, 5]))
def test_cifar10_truncated_batches(isolated, cut, protocol):
    content = _cifar_batch(protocol=protocol)
    _expect(
        ValueError,
        "not a readable CIFAR-10 batch",
        lambda: _load_cifar(content[: int(cut * len(content))]),
    )


def test_cifar10_batches_cut_inside_a_global_name_are_truncated_not_forbidden(isolated):
    # protocols 0-3 name globals as text lines; a cut inside one once read as a shortened,
    # refused name (found by the test above, 1 case in about 4000)
    content = _cifar_batch(protocol=2)
    globals_ = [pos for op, _, pos in pickletools.genops(content) if op.name == "GLOBAL"]
    assert globals_
    for start in globals_:
        end = content.index(b"\n", content.index(b"\n", start) + 1)
        for cut in range(start + 1, end + 1):
            load = partial(_load_cifar, content[:cut])
            _expect(ValueError, "not a readable CIFAR-10 batch", load)


@settings(SETTINGS, max_examples=30)
@given(where=st.floats(0, 1, exclude_max=True), xor=st.integers(1, 255))
def test_cifar10_corrupt_bytes_load_or_raise_clear_errors(isolated, where, xor):
    content = bytearray(_cifar_batch())
    content[int(where * len(content))] ^= xor
    try:
        X, y = _load_cifar(bytes(content))
    except (ValueError, pickle.UnpicklingError) as exc:
        assert str(exc)
        return
    assert X.shape[1:] == (3, 32, 32) and len(X) == len(y)


def test_cifar10_malformed_and_malicious_batches(isolated, tmp_path):
    marker = tmp_path / "pwned"
    good = pickle.loads(_cifar_batch())
    cases = [
        (pickle.dumps(_Payload(marker)), pickle.UnpicklingError, "refusing to load global"),
        (pickle.dumps([1, 2, 3]), ValueError, "expected a pickled dict"),
        (pickle.dumps({**good, b"data": good[b"data"][:, :100]}), ValueError, "expected 3072"),
        (pickle.dumps({**good, b"data": good[b"data"].tolist()}), ValueError, "2-D uint8"),
        (pickle.dumps({**good, b"labels": [0, 1]}), ValueError, "has shape"),
        (pickle.dumps({**good, b"labels": [0, 1, 2, 99]}), ValueError, "0..9"),
        (pickle.dumps({**good, b"labels": ["a"] * 4}), ValueError, "list of integers"),
        (b"", ValueError, "not a readable"),
    ]
    for content, exc, match in cases:
        _expect(exc, match, _load_cifar, content)
    assert not marker.exists()
    with tempfile.TemporaryDirectory() as folder:
        _expect(FileNotFoundError, "was not found", lambda: load_cifar10(data_home=folder))
