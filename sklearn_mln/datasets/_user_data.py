"""The user's own data for the command line (``--data FILE``): ``.npz``, CSV or image folder.

:func:`read_data_file` returns ``X`` as float32 -- ``(n, features)`` for tables,
``(n, channels, height, width)`` for images -- and ``y`` as int64 (integer labels) or
strings (named classes). Every problem is a :class:`DataFileError` whose message is one
line naming the file, so the command line can print it as ``error: ...`` and stop before
anything is written.

- ``.npz`` (``numpy.savez``): arrays ``X`` and ``y``. ``X`` is ``(n, features)``,
  ``(n, height, width)`` (one channel) or ``(n, channels, height, width)``; uint8 values
  are divided by 255, others kept. Read without pickle.
- ``.csv``: comma-separated, one sample per row. The first row is a header when a column
  that holds numbers below holds text there. The label column is ``label_column`` (a
  header name or a 0-based index, negative from the end), else the first header named
  ``label``, ``y``, ``target`` or ``class`` (any case), else the last column. All other
  columns are the features and must be numbers; no empty cells.
- a folder: one subfolder per class, named after it, holding PNG, JPEG, BMP, GIF, TIFF or
  WebP images of one size (other files and hidden entries are ignored). Grayscale when
  every image is, else RGB; pixels divided by 255. Reading images needs Pillow
  (``pip install "sklearn-mln[images]"``).

Every class needs at least 2 samples (one for each half of the 50 / 50 split).
"""

from __future__ import annotations

import csv
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
LABEL_NAMES = ("label", "y", "target", "class")
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}


class DataFileError(ValueError):
    """A data file that cannot be used; the message is one line."""


def read_data_file(path, *, label_column=None) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)`` from a ``.npz`` file, a ``.csv`` file or a folder of class subfolders."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataFileError(f"{path}: no such file or folder.")
    if label_column is not None and (path.is_dir() or path.suffix.lower() != ".csv"):
        raise DataFileError(f"{path}: --label-column applies to CSV files only.")
    if path.is_dir():
        X, y = _read_image_folder(path)
    elif path.suffix.lower() == ".npz":
        X, y = _read_npz(path)
    elif path.suffix.lower() == ".csv":
        X, y = _read_csv(path, label_column)
    else:
        raise DataFileError(
            f"{path}: unknown format {path.suffix or '(no suffix)'!r}; expected a .npz file, "
            "a .csv file or a folder with one subfolder of images per class."
        )
    return X, _check_labels(y, len(X), path)


def _check_labels(y: np.ndarray, n: int, path: Path) -> np.ndarray:
    if y.ndim != 1 or len(y) != n:
        raise DataFileError(f"{path}: y must be 1-D with one label per sample of X ({n}).")
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise DataFileError(f"{path}: labels must be classes, not continuous values.")
        y = y.astype(np.int64)
    elif y.dtype.kind in "iub":
        y = y.astype(np.int64)
    elif y.dtype.kind != "U":
        raise DataFileError(f"{path}: labels must be integers or strings, not {y.dtype}.")
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise DataFileError(
            f"{path}: only one class ({classes[0].item()!r}); at least 2 are needed."
        )
    if counts.min() < 2:
        rare = classes[counts.argmin()]
        raise DataFileError(
            f"{path}: class {rare.item()!r} has 1 sample; every class needs at least 2 "
            "(one for each half of the split)."
        )
    return y


def _check_features(X: np.ndarray, path: Path) -> np.ndarray:
    if X.dtype.kind not in "iufb":
        raise DataFileError(f"{path}: X must be numbers, not {X.dtype}.")
    if X.ndim not in (2, 3, 4) or len(X) == 0:
        raise DataFileError(
            f"{path}: X has shape {X.shape}; expected (n, features), (n, height, width) or "
            "(n, channels, height, width)."
        )
    scaled = X.astype(np.float32) / 255.0 if X.dtype == np.uint8 else X.astype(np.float32)
    if not np.all(np.isfinite(scaled)):
        raise DataFileError(f"{path}: X holds NaN or infinite values.")
    return scaled[:, None] if scaled.ndim == 3 else scaled


# --------------------------------------------------------------------------- npz


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not zipfile.is_zipfile(path):
        raise DataFileError(f"{path}: not a .npz archive (numpy.savez writes one).")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in ("X", "y") if key not in archive.files]
            if missing:
                raise DataFileError(
                    f"{path}: needs arrays 'X' and 'y'; it has {sorted(archive.files)}."
                )
            X, y = archive["X"], archive["y"]
    except DataFileError:
        raise
    except ValueError as exc:  # object arrays need pickle, which is refused
        raise DataFileError(f"{path}: X and y must be plain numeric or string arrays.") from exc
    except (OSError, zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise DataFileError(f"{path}: not a readable .npz file ({_one_line(exc)}).") from exc
    return _check_features(X, path), y


# --------------------------------------------------------------------------- CSV


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_csv(path: Path, label_column) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = [row for row in csv.reader(fh) if any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataFileError(f"{path}: not a readable CSV file ({_one_line(exc)}).") from exc
    if not rows:
        raise DataFileError(f"{path}: the file is empty.")
    header = None
    if len(rows) > 1 and any(not _is_number(a) and _is_number(b) for a, b in zip(rows[0], rows[1])):
        header, rows = [cell.strip() for cell in rows[0]], rows[1:]
    width = len(header) if header else len(rows[0])
    for line, row in enumerate(rows, start=2 if header else 1):
        if len(row) != width:
            raise DataFileError(f"{path}: line {line} has {len(row)} fields, expected {width}.")
    if width < 2:
        raise DataFileError(f"{path}: needs a label column and at least one feature column.")
    label = _label_index(path, header, width, label_column)
    cells = np.array(rows, dtype=str)
    features = np.delete(cells, label, axis=1)
    try:
        X = np.char.strip(features).astype(np.float64)
    except ValueError:
        row, col = next(
            (r, c) for r, c in np.ndindex(features.shape) if not _is_number(features[r, c])
        )
        column = [i for i in range(width) if i != label][col]
        name = repr(header[column]) if header else str(column)
        raise DataFileError(
            f"{path}: line {row + (2 if header else 1)}, column {name}: "
            f"{str(features[row, col])!r} is not a number (features must be numeric)."
        ) from None
    labels = np.char.strip(cells[:, label])
    if not all(labels):
        line = int(np.argmin(labels.astype(bool))) + (2 if header else 1)
        raise DataFileError(f"{path}: line {line} has an empty label.")
    if all(_is_number(v) for v in labels):
        labels = labels.astype(np.float64)
    return _check_features(X, path), labels


def _label_index(path: Path, header, width: int, label_column) -> int:
    if label_column is not None:
        if header and str(label_column) in header:
            return header.index(str(label_column))
        try:
            index = int(label_column)
        except ValueError:
            raise DataFileError(
                f"{path}: no column named {label_column!r}"
                + (f"; columns: {', '.join(header)}." if header else " (the file has no header).")
            ) from None
        if not -width <= index < width:
            raise DataFileError(f"{path}: label column {index} is out of range ({width} columns).")
        return index % width
    lowered = [name.lower() for name in header or []]
    named = next((lowered.index(name) for name in LABEL_NAMES if name in lowered), None)
    if named is not None:
        return named
    last = repr(header[-1]) if header else f"{width - 1} (counting from 0)"
    warnings.warn(
        f"{path}: no column is named {', '.join(LABEL_NAMES)}; the last column, {last}, is "
        "taken as the labels (label_column / --label-column chooses another).",
        UserWarning,
        stacklevel=5,
    )
    return width - 1


# --------------------------------------------------------------------------- image folder


def _read_image_folder(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise DataFileError(
            f"{path}: reading a folder of images needs Pillow: "
            'pip install "sklearn-mln[images]" (or pip install pillow).'
        ) from None
    folders = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataFileError(f"{path}: no class subfolders; put each class's images in its own.")
    files, labels = [], []
    for folder in folders:
        found = sorted(
            p
            for p in folder.iterdir()
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        )
        if not found:
            raise DataFileError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}).")
        files += found
        labels += [folder.name] * len(found)
    images = []
    for file in files:
        try:
            with Image.open(file) as image:
                image.load()
                images.append(image.copy())
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise DataFileError(f"{file}: not a readable image ({_one_line(exc)}).") from exc
        if images[-1].size != images[0].size:
            raise DataFileError(
                f"{file}: {_size(images[-1])} pixels, but {files[0]} is {_size(images[0])}; "
                "every image must have the same size."
            )
    mode = "L" if all(image.mode in _GRAY_MODES for image in images) else "RGB"
    X = np.stack([np.asarray(image.convert(mode), dtype=np.uint8) for image in images])
    X = X[:, None] if mode == "L" else X.transpose(0, 3, 1, 2)
    return _check_features(X, path), np.array(labels)


def _size(image) -> str:
    return f"{image.size[0]}x{image.size[1]}"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
