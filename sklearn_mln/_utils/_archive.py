"""The one file format the package writes: a NumPy ``.npz`` archive of arrays plus a JSON
header naming the format and its version.

Files are read with ``numpy.load(allow_pickle=False)`` (no code runs while reading) and
written atomically (a temporary file in the same folder, then ``os.replace``), so a crash
never leaves a half-written file behind.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

#: what a damaged archive raises inside numpy / zipfile / json
_READ_ERRORS = (
    zipfile.BadZipFile,
    OSError,
    ValueError,
    KeyError,
    EOFError,
    AttributeError,
    TypeError,
    NotImplementedError,  # zipfile: corrupt compression-method field
    RuntimeError,  # zipfile: corrupt flags read as "encrypted"
)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        # mkstemp creates 0600; a result is an ordinary file (0666 less the umask)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_result_files(stem, result: dict, table: str) -> None:
    """A benchmark's result as ``stem.json`` (the numbers) and ``stem.md`` (its table),
    each written atomically."""
    stem = Path(stem)
    atomic_write_bytes(stem.with_suffix(".json"), json.dumps(result, indent=2).encode())
    atomic_write_bytes(stem.with_suffix(".md"), (table + "\n").encode())


def write_archive(path, header: dict, arrays: dict[str, np.ndarray]) -> None:
    """Save ``arrays`` and the JSON ``header`` to ``path``, atomically."""
    buffer = io.BytesIO()
    np.savez(buffer, header=np.array(json.dumps(header)), **arrays)
    atomic_write_bytes(Path(path), buffer.getvalue())


def read_archive(
    path, format_name: str, format_version: int | tuple[int, ...], what: str
) -> tuple[dict, dict[str, np.ndarray]]:
    """The header and arrays of an archive written by :func:`write_archive`.

    ``format_version`` is the version read, or a tuple of the versions read.

    Raises ``ValueError`` naming ``what`` the file should be if it is truncated, corrupt,
    of another format, or of another format version.
    """
    source = repr(str(path))
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):  # a bare .npy array
            raise ValueError("not an .npz archive")
        with archive:
            arrays = {k: archive[k] for k in archive.files}
        header = json.loads(str(arrays.pop("header")))
    except _READ_ERRORS as exc:
        raise ValueError(
            f"{source} is not a readable {what} file (truncated or corrupt?): {exc}"
        ) from exc
    if not isinstance(header, dict) or header.get("format") != format_name:
        raise ValueError(f"{source} is not a {format_name} file.")
    versions = (format_version,) if isinstance(format_version, int) else format_version
    found = header.get("format_version")
    if type(found) is not int or found not in versions:
        readable = " or ".join(str(v) for v in versions)
        raise ValueError(
            f"{source} has {what} format version {found!r}; this version of sklearn-mln "
            f"reads version {readable}."
        )
    return header, arrays
