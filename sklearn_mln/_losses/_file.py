"""The meta-loss file: a :class:`~sklearn_mln.MetaLossNetwork`'s architecture, weights and
metadata in the package's archive format (:mod:`sklearn_mln._utils._archive`; no pickle).

A ``.mln`` file is an ``.npz`` archive holding the float64 weights (``theta``) and a JSON
header: the format name and version, the package version, the architecture (``spec``, as
:meth:`MetaLossSpec.to_dict <sklearn_mln._losses._meta_loss.MetaLossSpec.to_dict>` writes it),
``n_params`` and the free-form ``metadata``. This module reads and writes that layout;
:func:`~sklearn_mln.load_meta_loss` turns it into a network.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._utils._archive import read_archive, write_archive
from .._version import __version__

FORMAT_NAME = "sklearn-mln-meta-loss"
#: version 2 adds the architecture fields ``true_class_input`` and ``progress_input``,
#: version 3 ``shots_input``; a file is written in the lowest version that holds its
#: architecture; all are read
FORMAT_VERSIONS = (1, 2, 3)


def _format_version(spec: dict) -> int:
    if "shots_input" in spec:
        return 3
    return 2 if {"true_class_input", "progress_input"} & set(spec) else 1


def write_loss_file(path, spec: dict, theta: np.ndarray, metadata: dict) -> None:
    """Write a meta-loss file atomically."""
    header = {
        "format": FORMAT_NAME,
        "format_version": _format_version(spec),
        "package_version": __version__,
        "spec": spec,
        "n_params": len(theta),
        "metadata": metadata,
    }
    write_archive(path, header, {"theta": np.asarray(theta, dtype=np.float64)})


def read_loss_file(path) -> tuple[dict, np.ndarray, object]:
    """The architecture (a dict), weights and metadata (as stored) of a meta-loss file.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is truncated, corrupt, of another format or version, or has no
        readable weights or architecture.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No meta-loss file at {str(path)!r}.")
    header, arrays = read_archive(path, FORMAT_NAME, FORMAT_VERSIONS, "meta-loss")
    try:
        theta = np.asarray(arrays["theta"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(
            f"{str(path)!r} is not a readable meta-loss file (truncated or corrupt?): {exc}"
        ) from exc
    try:
        spec = {**header["spec"], "hidden_sizes": tuple(header["spec"]["hidden_sizes"])}
    except (TypeError, KeyError) as exc:
        raise ValueError(f"{str(path)!r} has an invalid architecture header: {exc}") from exc
    return spec, theta, header.get("metadata")
