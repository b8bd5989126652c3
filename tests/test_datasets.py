import gzip
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
from sklearn.utils import Bunch

from sklearn_mln import datasets
from sklearn_mln.datasets import load_cifar10, load_digits_images, load_fashion_mnist
from sklearn_mln.datasets._user_data import DataFileError, read_data_file

FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
pytestmark = pytest.mark.usefixtures("no_data_env")


# --------------------------------------------------------------------------- digits


def test_digits_images():
    X, y = load_digits_images(return_X_y=True)
    assert X.shape == (1797, 1, 8, 8)
    assert X.dtype == np.float32 and y.dtype == np.int64
    assert X.min() == 0.0 and X.max() == 1.0
    assert y.shape == (1797,)
    assert set(np.unique(y)) == set(range(10))


def test_digits_bunch_matches_return_X_y(digits):
    bunch = load_digits_images()
    assert isinstance(bunch, Bunch)
    X, y = digits
    np.testing.assert_array_equal(bunch.data, X)
    np.testing.assert_array_equal(bunch.target, y)
    np.testing.assert_array_equal(bunch.target_names, np.arange(10))
    assert isinstance(bunch.DESCR, str) and bunch.DESCR


# --------------------------------------------------------------------------- Fashion-MNIST


def _idx_bytes(array, magic):
    array = np.asarray(array, dtype=np.uint8)
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def _write_fashion(folder, subset="train", n=5, compress=True, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    prefix = "train" if subset == "train" else "t10k"
    folder.mkdir(parents=True, exist_ok=True)
    for name, payload in [
        (f"{prefix}-images-idx3-ubyte", _idx_bytes(images, 2051)),
        (f"{prefix}-labels-idx1-ubyte", _idx_bytes(labels, 2049)),
    ]:
        if compress:
            (folder / f"{name}.gz").write_bytes(gzip.compress(payload))
        else:
            (folder / name).write_bytes(payload)
    return images, labels


@pytest.mark.skipif(not FASHION_SYSTEM_DIR.is_dir(), reason="dataset-fashion-mnist not installed")
@pytest.mark.parametrize("subset, n", [("train", 60000), ("test", 10000)])
def test_fashion_mnist_real_files(subset, n):
    bunch = load_fashion_mnist(subset)
    X, y = bunch.data, bunch.target
    assert X.shape == (n, 1, 28, 28)
    assert X.dtype == np.float32 and y.dtype == np.int64
    assert X.min() >= 0.0 and X.max() <= 1.0
    np.testing.assert_array_equal(np.bincount(y), np.full(10, n // 10))
    assert len(bunch.target_names) == 10 and bunch.target_names[0] == "T-shirt/top"


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("subset", ["train", "test"])
def test_fashion_mnist_from_data_home(tmp_path, subset, compress):
    images, labels = _write_fashion(tmp_path, subset, compress=compress)
    X, y = load_fashion_mnist(subset, data_home=tmp_path, return_X_y=True)
    assert X.shape == (5, 1, 28, 28) and X.dtype == np.float32
    np.testing.assert_allclose(X[:, 0] * 255, images, atol=1e-3)
    np.testing.assert_array_equal(y, labels)
    assert y.dtype == np.int64


@pytest.mark.parametrize("subfolder", ["", "fashion-mnist"])
def test_fashion_mnist_from_env_var(tmp_path, monkeypatch, subfolder):
    images, labels = _write_fashion(tmp_path / subfolder, "test", n=3, seed=1)
    monkeypatch.setenv("SKLEARN_MLN_DATA", str(tmp_path))
    X, y = load_fashion_mnist("test", return_X_y=True)
    np.testing.assert_allclose(X[:, 0] * 255, images, atol=1e-3)
    np.testing.assert_array_equal(y, labels)


def test_fashion_mnist_data_home_comes_before_env_var(tmp_path, monkeypatch):
    _, labels_home = _write_fashion(tmp_path / "home", "test", n=4, seed=2)
    _write_fashion(tmp_path / "env", "test", n=7, seed=3)
    monkeypatch.setenv("SKLEARN_MLN_DATA", str(tmp_path / "env"))
    _, y = load_fashion_mnist("test", data_home=tmp_path / "home", return_X_y=True)
    np.testing.assert_array_equal(y, labels_home)


@pytest.mark.parametrize("compress", [True, False])
def test_fashion_mnist_truncated_file(tmp_path, compress):
    _write_fashion(tmp_path, "test", compress=compress)
    name = "t10k-images-idx3-ubyte" + (".gz" if compress else "")
    path = tmp_path / name
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(ValueError, match=name):
        load_fashion_mnist("test", data_home=tmp_path)


def test_fashion_mnist_bad_magic(tmp_path):
    _write_fashion(tmp_path, "test", compress=False)
    path = tmp_path / "t10k-labels-idx1-ubyte"
    path.write_bytes(_idx_bytes(np.zeros(5), 2051))
    with pytest.raises(ValueError, match="magic"):
        load_fashion_mnist("test", data_home=tmp_path)


def test_fashion_mnist_missing_files(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets._loaders, "_FASHION_SYSTEM_DIRS", (tmp_path / "system",))
    monkeypatch.setenv("SKLEARN_MLN_DATA", str(tmp_path / "env"))
    (tmp_path / "home").mkdir()
    with pytest.raises(FileNotFoundError) as excinfo:
        load_fashion_mnist("train", data_home=tmp_path / "home")
    message = str(excinfo.value)
    for folder in ["home", "env", "system", os.path.join("env", "fashion-mnist")]:
        assert str(tmp_path / folder) in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "github.com/zalandoresearch/fashion-mnist" in message


@pytest.mark.parametrize("loader", [load_fashion_mnist, load_cifar10])
def test_bad_subset(loader):
    with pytest.raises(ValueError, match="subset"):
        loader("validation")


# --------------------------------------------------------------------------- CIFAR-10


def _write_cifar(folder, n_train_batches=5, n=4, test=True):
    """Write fake batches; pixel values encode (image index, channel) to check the layout."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    written = {}
    names = [f"data_batch_{i}" for i in range(1, n_train_batches + 1)]
    names += ["test_batch"] if test else []
    for name in names:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=n)]
        batch = {b"batch_label": name.encode(), b"data": data, b"labels": labels}
        with open(folder / name, "wb") as fh:
            pickle.dump(batch, fh)
        written[name] = (data, labels)
    return written


@pytest.mark.parametrize("subfolder", ["", "cifar-10-batches-py"])
def test_cifar10_train_and_test(tmp_path, subfolder):
    written = _write_cifar(tmp_path / subfolder)
    bunch = load_cifar10("train", data_home=tmp_path)
    X, y = bunch.data, bunch.target
    assert X.shape == (20, 3, 32, 32) and X.dtype == np.float32
    assert y.dtype == np.int64
    assert X.min() >= 0.0 and X.max() <= 1.0
    expected_y = sum((written[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    np.testing.assert_array_equal(y, expected_y)
    assert list(bunch.target_names) == list(datasets.CIFAR10_CLASSES)

    # Row layout: 1024 red, 1024 green, 1024 blue values, each a row-major 32x32 image.
    data = written["data_batch_2"][0]
    i = 4 + 1  # second image of the second batch
    for c, h, w in [(0, 0, 0), (0, 0, 31), (0, 1, 0), (1, 0, 0), (2, 31, 31), (1, 5, 7)]:
        assert X[i, c, h, w] * 255 == pytest.approx(data[1, c * 1024 + h * 32 + w], abs=1e-3)

    X_test, y_test = load_cifar10("test", data_home=tmp_path, return_X_y=True)
    assert X_test.shape == (4, 3, 32, 32)
    np.testing.assert_array_equal(y_test, written["test_batch"][1])


def test_cifar10_partial_train_and_env_var(tmp_path, monkeypatch):
    _write_cifar(tmp_path / "cifar-10-batches-py", n_train_batches=2)
    monkeypatch.setenv("SKLEARN_MLN_DATA", str(tmp_path))
    X, _ = load_cifar10(return_X_y=True)
    assert X.shape == (8, 3, 32, 32)


def test_cifar10_missing_files(tmp_path):
    _write_cifar(tmp_path, test=False)
    with pytest.raises(FileNotFoundError, match="test_batch") as excinfo:
        load_cifar10("test", data_home=tmp_path)
    assert "cs.toronto.edu" in str(excinfo.value)
    with pytest.raises(FileNotFoundError, match="data_batch_1"):
        load_cifar10("train", data_home=tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="SKLEARN_MLN_DATA"):
        load_cifar10("train")


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar10_refuses_malicious_pickle(tmp_path):
    _write_cifar(tmp_path)
    marker = tmp_path / "pwned"
    with open(tmp_path / "test_batch", "wb") as fh:
        pickle.dump({b"data": _Exploit(marker), b"labels": [0]}, fh)
    with pytest.raises(pickle.UnpicklingError, match="os.system|posix.system"):
        load_cifar10("test", data_home=tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar10_pickle_protocols(tmp_path, protocol):
    data = np.arange(2 * 3072, dtype=np.int64).astype(np.uint8).reshape(2, 3072)
    with open(tmp_path / "test_batch", "wb") as fh:
        pickle.dump({b"data": data, b"labels": [3, 7]}, fh, protocol=protocol)
    X, y = load_cifar10("test", data_home=tmp_path, return_X_y=True)
    np.testing.assert_allclose(X.reshape(2, -1) * 255, data, atol=1e-3)
    np.testing.assert_array_equal(y, [3, 7])


@pytest.mark.parametrize(
    "content",
    [
        b"not a pickle at all",
        pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]})[:-40],
        pickle.dumps([1, 2, 3]),
        pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}),
        pickle.dumps({b"data": np.zeros((2, 3072), np.float64), b"labels": [0, 1]}),
        pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}),
        pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}),
    ],
)
def test_cifar10_malformed_batch(tmp_path, content):
    (tmp_path / "test_batch").write_bytes(content)
    with pytest.raises(ValueError, match="test_batch"):
        load_cifar10("test", data_home=tmp_path)


# --------------------------------------------------------------------------- the user's files


def test_npz_shapes_and_scaling(tmp_path, digits):
    X, y = digits
    images = (X[:40, 0] * 255).astype(np.uint8)  # (n, h, w) uint8: one channel, / 255
    np.savez(tmp_path / "gray.npz", X=images, y=y[:40])
    X_read, y_read = read_data_file(tmp_path / "gray.npz")
    assert X_read.shape == (40, 1, 8, 8) and X_read.dtype == np.float32
    np.testing.assert_allclose(X_read[:, 0], images / 255.0, rtol=1e-6)
    assert y_read.dtype == np.int64
    np.savez(tmp_path / "flat.npz", X=X[:40].reshape(40, -1) * 16, y=y[:40].astype(float))
    X_read, y_read = read_data_file(tmp_path / "flat.npz")  # floats kept as they are
    np.testing.assert_array_equal(X_read, X[:40].reshape(40, -1) * 16)
    np.testing.assert_array_equal(y_read, y[:40])
    np.savez(tmp_path / "names.npz", X=X[:40], y=np.array(["a", "b"] * 20))
    X_read, y_read = read_data_file(tmp_path / "names.npz")
    assert X_read.shape == (40, 1, 8, 8) and set(y_read) == {"a", "b"}


@pytest.mark.parametrize(
    "text, label_column, y_expected",
    [
        ("1,2,a\n3,4,b\n5,6,a\n7,8,b\n", None, "abab"),
        ("target,x1,x2\n0,1,2\n1,3,4\n0,5,6\n1,7,8\n", None, [0, 1, 0, 1]),
        ("x1,Label,x2\n1,a,2\n3,b,4\n5,a,6\n7,b,8\n", None, "abab"),
        ("k,x,y2\n0,1,2\n1,3,4\n0,5,6\n1,7,8\n", "k", [0, 1, 0, 1]),
        ("0,1,2\n1,3,4\n0,5,6\n1,7,8\n", "0", [0, 1, 0, 1]),
        ("1,2,0\n\n3,4,1\n5,6,0\n7,8,1\n", "-1", [0, 1, 0, 1]),
    ],
    ids=["no header", "target", "label any case", "by name", "by index", "negative index"],
)
def test_csv_label_column_rule(tmp_path, text, label_column, y_expected):
    """Every file holds features (1, 2), (3, 4), (5, 6), (7, 8) and some label column."""
    (tmp_path / "d.csv").write_text(text)
    X, y = read_data_file(tmp_path / "d.csv", label_column=label_column)
    np.testing.assert_array_equal(X, np.arange(1, 9, dtype=np.float32).reshape(4, 2))
    np.testing.assert_array_equal(y, np.asarray(list(y_expected)))


@pytest.mark.parametrize(
    "text, label_column, message",
    [
        ("a,b\n1,2\n3,4\n", "c", "no column named 'c'; columns: a, b."),
        ("1,2\n3,4\n", "5", "label column 5 is out of range (2 columns)"),
        ("1\n2\n", None, "needs a label column and at least one feature column"),
        ("x,label\n1,\n2,b\n", None, "line 2 has an empty label"),
        ("x,label\n1,0.5\n2,1.5\n", None, "not continuous values"),
        ("x,label\n1,a\n,b\n", None, "line 3, column 'x': '' is not a number"),
    ],
)
def test_csv_errors(tmp_path, text, label_column, message):
    (tmp_path / "d.csv").write_text(text)
    with pytest.raises(DataFileError, match="d.csv: .*" + re.escape(message)):
        read_data_file(tmp_path / "d.csv", label_column=label_column)


def test_image_folder(tmp_path, digits):
    Image = pytest.importorskip("PIL.Image")
    X, y = digits
    for i in range(6):
        folder = tmp_path / ("odd" if y[i] % 2 else "even")
        folder.mkdir(exist_ok=True)
        pixels = np.round(X[i, 0] * 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.png")
    (tmp_path / "even" / "notes.txt").write_text("ignored")
    (tmp_path / ".hidden").mkdir()
    X_read, y_read = read_data_file(tmp_path)
    assert X_read.shape == (6, 1, 8, 8)
    assert list(y_read) == sorted(["odd" if v % 2 else "even" for v in y[:6]])
    even = [i for i in range(6) if y[i] % 2 == 0]
    np.testing.assert_allclose(X_read[0, 0], np.round(X[even[0], 0] * 255) / 255, atol=1e-6)
    # one colour image makes the whole set RGB, channels first
    Image.new("RGB", (8, 8), (255, 0, 0)).save(tmp_path / "odd" / "red.jpg")
    X_read, y_read = read_data_file(tmp_path)
    assert X_read.shape == (7, 3, 8, 8)
    red = list(y_read).index("odd") + sum(1 for i in range(6) if y[i] % 2)
    assert X_read[red, 0].mean() > 0.9 and X_read[red, 1:].mean() < 0.1
    with pytest.raises(DataFileError, match="applies to CSV files only"):
        read_data_file(tmp_path, label_column="label")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFileError, match="empty: no images"):
        read_data_file(tmp_path)
