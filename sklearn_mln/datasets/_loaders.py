"""The loaders of :mod:`sklearn_mln.datasets`: digits, Fashion-MNIST IDX files, CIFAR-10
batches, each read from local files only (see the package docstring for where they are
looked for)."""

from __future__ import annotations

import gzip
import os
import pickle
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import load_digits
from sklearn.utils import Bunch

from .._utils._safe_pickle import (
    NUMPY_REBUILDERS,
    NUMPY_TYPES,
    ForbiddenPickleError,
    RestrictedUnpickler,
)

__all__ = ["load_digits_images", "load_fashion_mnist", "load_cifar10"]

_ENV_VAR = "SKLEARN_MLN_DATA"
_FASHION_SYSTEM_DIRS = (Path("/usr/share/datasets/fashion-mnist"),)
_FASHION_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
_IDX_LABELS_MAGIC = 2049  # unsigned bytes, 1 dimension
_IDX_IMAGES_MAGIC = 2051  # unsigned bytes, 3 dimensions


def _check_subset(subset: Any) -> str:
    if subset not in ("train", "test"):
        raise ValueError(f"subset must be 'train' or 'test', got {subset!r}.")
    return subset


def _candidate_dirs(data_home: str | os.PathLike | None, subfolder: str) -> list[Path]:
    """``data_home`` then ``$SKLEARN_MLN_DATA``, each as itself and its ``subfolder``."""
    roots = [data_home, os.environ.get(_ENV_VAR) or None]
    dirs: list[Path] = []
    for root in roots:
        if root is None:
            continue
        root = Path(root).expanduser()
        for folder in (root, root / subfolder):
            if folder not in dirs:
                dirs.append(folder)
    return dirs


def _result(X: np.ndarray, y: np.ndarray, names: Any, descr: str, return_X_y: bool):
    if return_X_y:
        return X, y
    return Bunch(data=X, target=y, target_names=np.asarray(names), DESCR=descr)


def load_digits_images(*, return_X_y=False):
    """Load scikit-learn's handwritten digits as one-channel 8x8 images.

    The 1797 digits are embedded in scikit-learn, so this needs no files; it is the default
    data set of the package.

    Parameters
    ----------
    return_X_y : bool, default=False
        If True, return ``(X, y)`` instead of a :class:`~sklearn.utils.Bunch`.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        With ``data`` (X), ``target`` (y), ``target_names`` (the digits 0 to 9) and ``DESCR``.
    (X, y) : tuple of ndarray
        If ``return_X_y`` is True. ``X`` has shape (1797, 1, 8, 8), float32 in [0, 1] (pixel
        counts divided by 16); ``y`` has shape (1797,), int64.

    Examples
    --------
    >>> from sklearn_mln.datasets import load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> X.shape, X.dtype, y.dtype
    ((1797, 1, 8, 8), dtype('float32'), dtype('int64'))
    """
    digits = load_digits()
    X = (digits.images / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    y = digits.target.astype(np.int64)
    descr = "Digits as (n, 1, 8, 8) float32 images in [0, 1].\n\n" + digits.DESCR
    return _result(X, y, digits.target_names, descr, return_X_y)


# --------------------------------------------------------------------------- Fashion-MNIST


def _find_file(folder: Path, name: str) -> Path | None:
    for candidate in (folder / f"{name}.gz", folder / name):
        if candidate.is_file():
            return candidate
    return None


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """Parse an IDX file of unsigned bytes (gzip-compressed if its name ends in ``.gz``)."""
    with open(path, "rb") as fh:
        raw = fh.read()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"{path}: not a valid gzip file ({exc}).") from exc
    ndim = magic & 0xFF
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise ValueError(f"{path}: truncated IDX file ({len(raw)} bytes, header too short).")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise ValueError(f"{path}: bad IDX magic number {found}, expected {magic}.")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(dims, dtype=np.int64))
    if len(raw) - header_len != expected:
        raise ValueError(
            f"{path}: IDX payload has {len(raw) - header_len} bytes, but the header "
            f"dimensions {dims} need {expected}; the file is truncated or corrupt."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(dims)


def load_fashion_mnist(subset="train", *, data_home=None, return_X_y=False):
    """Load Fashion-MNIST from its original IDX files (never downloads).

    The files (``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
    ``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz``, or the same names without
    ``.gz``) are looked for in, in order: ``data_home``, ``$SKLEARN_MLN_DATA`` (the folder and its
    ``fashion-mnist`` subfolder, also for ``data_home``) and ``/usr/share/datasets/fashion-mnist``
    (Debian package ``dataset-fashion-mnist``). The first folder holding both files of the
    subset is used.

    Parameters
    ----------
    subset : {"train", "test"}, default="train"
        The 60000 training or the 10000 test images.
    data_home : str or path-like, default=None
        Folder holding the IDX files; searched first.
    return_X_y : bool, default=False
        If True, return ``(X, y)`` instead of a :class:`~sklearn.utils.Bunch`.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        With ``data`` (X), ``target`` (y), ``target_names`` (the 10 class names) and ``DESCR``.
    (X, y) : tuple of ndarray
        If ``return_X_y`` is True. ``X`` has shape (n, 1, 28, 28), float32 in [0, 1] (pixels
        divided by 255); ``y`` has shape (n,), int64 in 0..9.

    Raises
    ------
    FileNotFoundError
        If no searched folder holds the files; the message says how to get them.
    ValueError
        If ``subset`` is invalid or a file is truncated or corrupt.

    Examples
    --------
    >>> from sklearn_mln.datasets import load_fashion_mnist
    >>> X, y = load_fashion_mnist("test", return_X_y=True)  # doctest: +SKIP
    >>> X.shape  # doctest: +SKIP
    (10000, 1, 28, 28)
    """
    subset = _check_subset(subset)
    images_name, labels_name = _FASHION_FILES[subset]
    searched = _candidate_dirs(data_home, "fashion-mnist") + list(_FASHION_SYSTEM_DIRS)
    for folder in searched:
        images_path = _find_file(folder, images_name)
        labels_path = _find_file(folder, labels_name)
        if images_path is not None and labels_path is not None:
            break
    else:
        folders = "\n".join(f"  - {folder}" for folder in searched)
        raise FileNotFoundError(
            f"Fashion-MNIST {subset} files {images_name}[.gz] and {labels_name}[.gz] were not "
            f"found. Searched:\n{folders}\nTo get them, run `apt-get install "
            "dataset-fashion-mnist` (Debian/Ubuntu), or download the four IDX files from "
            "https://github.com/zalandoresearch/fashion-mnist (folder data/fashion) into a "
            f"folder and pass it as data_home= or set ${_ENV_VAR}."
        )
    images = _read_idx(images_path, _IDX_IMAGES_MAGIC)
    labels = _read_idx(labels_path, _IDX_LABELS_MAGIC)
    if len(images) != len(labels):
        raise ValueError(
            f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels."
        )
    if labels.size and labels.max() >= len(FASHION_MNIST_CLASSES):
        raise ValueError(f"{labels_path}: label {labels.max()} out of range 0..9.")
    X = images.astype(np.float32)[:, None]
    X /= 255.0
    y = labels.astype(np.int64)
    descr = f"Fashion-MNIST {subset} set ({len(y)} images), read from {images_path.parent}."
    return _result(X, y, FASHION_MNIST_CLASSES, descr, return_X_y)


# --------------------------------------------------------------------------- CIFAR-10

_CIFAR_HINT = "CIFAR-10 batches may only hold numpy arrays, bytes, lists and dicts."


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 batch safely; return uint8 data (n, 3072) and int64 labels (n,)."""
    with open(path, "rb") as fh:
        try:
            batch = RestrictedUnpickler(
                fh,
                {**NUMPY_REBUILDERS, **NUMPY_TYPES},
                NUMPY_REBUILDERS.values(),
                hint=_CIFAR_HINT,
                encoding="bytes",
            ).load()
        except ForbiddenPickleError as exc:
            raise pickle.UnpicklingError(f"{path}: {exc}") from None
        except Exception as exc:  # truncated or garbled pickles raise many kinds of errors
            raise ValueError(f"{path}: not a readable CIFAR-10 batch ({exc!r}).") from exc
    if not isinstance(batch, dict):
        raise ValueError(f"{path}: expected a pickled dict, got {type(batch).__name__}.")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise ValueError(f"{path}: b'data' must be a 2-D uint8 array.")
    if data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{path}: b'data' rows have {data.shape[1]} values, expected 3072.")
    try:
        y = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: b'labels' must be a list of integers.") from exc
    if y.shape != (len(data),):
        raise ValueError(f"{path}: {len(data)} images but b'labels' has shape {y.shape}.")
    if y.size and (y.min() < 0 or y.max() >= len(CIFAR10_CLASSES)):
        raise ValueError(f"{path}: labels must lie in 0..9.")
    return data, y


def load_cifar10(subset="train", *, data_home=None, return_X_y=False):
    """Load CIFAR-10 from its python-pickle batches (never downloads).

    The batches (``data_batch_1`` ... ``data_batch_5`` and ``test_batch``, as extracted from
    ``cifar-10-python.tar.gz``) are looked for in ``data_home``, then in ``$SKLEARN_MLN_DATA``,
    each as the folder itself and its ``cifar-10-batches-py`` subfolder. They are read with a
    restricted unpickler that only rebuilds numpy arrays, so a tampered file cannot run code.

    Parameters
    ----------
    subset : {"train", "test"}, default="train"
        The training batches or the test batch.
    data_home : str or path-like, default=None
        Folder holding the batch files; searched first.
    return_X_y : bool, default=False
        If True, return ``(X, y)`` instead of a :class:`~sklearn.utils.Bunch`.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        With ``data`` (X), ``target`` (y), ``target_names`` (the 10 class names) and ``DESCR``.
    (X, y) : tuple of ndarray
        If ``return_X_y`` is True. ``X`` has shape (n, 3, 32, 32) (RGB channels first),
        float32 in [0, 1]; ``y`` has shape (n,), int64 in 0..9.

    Raises
    ------
    FileNotFoundError
        If no searched folder holds the batches; the message says how to get them.
    ValueError
        If ``subset`` is invalid or a batch is malformed.
    pickle.UnpicklingError
        If a batch refers to anything but numpy arrays (a possibly malicious file).

    Notes
    -----
    The training set is made of whichever of ``data_batch_1`` to ``data_batch_5`` exist in the
    folder, in order (50000 images when all five do); ``data_batch_1`` is required. This allows
    a quick subset of CIFAR-10 by copying only some batches.

    Examples
    --------
    >>> from sklearn_mln.datasets import load_cifar10
    >>> X, y = load_cifar10("test", data_home="~/data", return_X_y=True)  # doctest: +SKIP
    >>> X.shape  # doctest: +SKIP
    (10000, 3, 32, 32)
    """
    subset = _check_subset(subset)
    required = "data_batch_1" if subset == "train" else "test_batch"
    searched = _candidate_dirs(data_home, "cifar-10-batches-py")
    folder = next((d for d in searched if (d / required).is_file()), None)
    if folder is None:
        folders = (
            "\n".join(f"  - {d}" for d in searched) or f"  (none: no data_home, ${_ENV_VAR} unset)"
        )
        raise FileNotFoundError(
            f"CIFAR-10 {subset} batch {required} was not found. Searched:\n{folders}\n"
            "To get it, download cifar-10-python.tar.gz (the CIFAR-10 python version) from "
            "https://www.cs.toronto.edu/~kriz/cifar.html, extract it, and pass the "
            f"cifar-10-batches-py folder (or its parent) as data_home= or set ${_ENV_VAR}."
        )
    if subset == "train":
        names = [f"data_batch_{i}" for i in range(1, 6) if (folder / f"data_batch_{i}").is_file()]
    else:
        names = ["test_batch"]
    batches = [_read_cifar_batch(folder / name) for name in names]
    data = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])
    X = data.reshape(-1, 3, 32, 32).astype(np.float32)
    X /= 255.0
    descr = f"CIFAR-10 {subset} set ({len(y)} images from {', '.join(names)}) in {folder}."
    return _result(X, y, CIFAR10_CLASSES, descr, return_X_y)
