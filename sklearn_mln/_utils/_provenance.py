"""Provenance written by the program: what produced a result, on what, with what.

Every results file (benchmark tables, evolution logs, shipped losses) embeds the dict of
:func:`provenance`, so nobody writes a commit, a version or a command by hand.
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from .._version import __version__

#: the distributions whose versions a result records
RECORDED_PACKAGES = ("torch", "numpy", "scikit-learn", "skorch", "cma", "joblib", "scipy", "numba")
#: keys every provenance record has (a test checks committed results files for them)
REQUIRED_KEYS = ("commit", "dirty", "versions", "command", "cores", "date")
#: where generated results live: changes there do not make the code tree dirty
RESULTS = "benchmarks/results"


#: the checkout this package runs from, if it is one
ROOT = Path(__file__).resolve().parents[2]


def _git(*args: str, root: Path = ROOT) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def cpu_model() -> str:
    """The processor's model name where the system says it, else the architecture."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


#: the vector extensions that decide which float kernels torch runs (and so the last bits)
SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "amx_tile")


def simd_flags() -> list[str] | None:
    """Which of :data:`SIMD_FLAGS` the processor has, where the system says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    present = set(line.split(":", 1)[1].split())
                    return [flag for flag in SIMD_FLAGS if flag in present]
    except OSError:
        pass
    return None


def package_versions() -> dict[str, str | None]:
    """Installed versions of Python, this package and :data:`RECORDED_PACKAGES`."""
    versions: dict[str, str | None] = {
        "python": platform.python_version(),
        "sklearn-mln": __version__,
    }
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def command_line(argv: list[str] | None = None) -> str:
    """The command that is running, as a shell would read it back."""
    argv = sys.argv if argv is None else argv
    program = Path(argv[0]).name if argv else ""
    if program == "__main__.py":
        program = "-m sklearn_mln"
    elif program.endswith(".py"):
        program = os.path.relpath(argv[0]) if Path(argv[0]).exists() else argv[0]
    return shlex.join(["python", *program.split(), *argv[1:]]) if argv else "python"


def provenance(
    *,
    command: str | None = None,
    seed: int | None = None,
    started: float | None = None,
    threads: int | None = None,
    device: str | None = None,
) -> dict:
    """What produced a result: commit (and whether the tree was dirty), versions, command,
    seed, wall time since ``started`` (a :func:`time.perf_counter` value), cores, threads,
    the load average when it was called (timings on a busy machine say so) and, given the
    torch ``device`` the work ran on, that device (a GPU by its name).

    ``commit`` is ``None`` outside a git checkout (an installed package).
    """
    commit = _git("rev-parse", "HEAD")
    record = {
        "commit": commit,
        "dirty": tree_is_dirty() if commit else None,
        "versions": package_versions(),
        "command": command if command is not None else command_line(),
        "seed": seed,
        "cores": os.cpu_count(),
        "load_average": _load_average(),
        "torch_threads": threads,
        "machine": f"{platform.system()} {platform.machine()}, {cpu_model()}",
        "simd": simd_flags(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if device is not None:
        record["device"] = device_name(device)
    if started is not None:
        record["wall_seconds"] = round(time.perf_counter() - started, 2)
    return record


def record_measurement(
    measure: Callable[[], dict],
    markdown: Callable[[dict], str],
    stem,
    *,
    seed: int | None = 0,
    threads: int = 1,
) -> dict:
    """Run ``measure()`` at ``threads`` torch threads and write its result with provenance.

    The provenance is taken before the run (the commit it starts from, the load before it)
    and completed with the wall time after; the result gets it under ``"provenance"``.
    ``markdown(result)`` is printed, and both are written by
    :func:`~sklearn_mln._utils._archive.write_result_files` as ``stem.json`` / ``stem.md``.
    Returns the result.
    """
    import torch

    from ._archive import write_result_files

    started = time.perf_counter()
    torch.set_num_threads(threads)
    record = provenance(seed=seed, threads=threads)
    result = measure()
    result["provenance"] = {**record, "wall_seconds": round(time.perf_counter() - started, 2)}
    table = markdown(result)
    print(table)
    write_result_files(stem, result, table)
    return result


def device_name(device: str) -> str:
    """``"cpu"``, or an accelerator as ``"cuda:0 (NVIDIA H200)"``."""
    import torch

    from ._device import cuda_index

    index = cuda_index(device)
    if index is not None:
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return str(torch.device(device))


def tree_is_dirty(root: Path = ROOT) -> bool | None:
    """Whether tracked files other than :data:`RESULTS` differ from the commit.

    Results files a run (or the one before it) writes are not the code that made a result:
    two reports written one after the other are both clean. ``None`` where git cannot say.
    """
    status = _git(
        "status", "--porcelain", "--untracked-files=no", "--", ".", f":(exclude){RESULTS}",
        root=root,
    )  # fmt: skip
    return None if status is None else bool(status)


def _load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages, where the system has them."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def provenance_lines(record: dict) -> list[str]:
    """A markdown header block of a provenance record, for generated reports."""
    versions = ", ".join(f"{k} {v}" for k, v in record["versions"].items() if v)
    commit = record["commit"] or "not a git checkout"
    if record.get("dirty"):
        commit += " (with uncommitted changes)"
    lines = [
        f"Generated by `{record['command']}` on {record['date']}.",
        "",
        f"- commit: {commit}",
        f"- versions: {versions}",
        f"- machine: {record['machine']}, {record['cores']} cores"
        + (f", {record['torch_threads']} torch threads" if record.get("torch_threads") else "")
        + (
            f", load average {record['load_average'][0]:.2f} at the start"
            if record.get("load_average")
            else ""
        ),
    ]
    if record.get("device") not in (None, "cpu"):
        lines.append(f"- device: {record['device']}")
    if record.get("seed") is not None:
        lines.append(f"- seed: {record['seed']}")
    if record.get("wall_seconds") is not None:
        lines.append(f"- wall time: {record['wall_seconds']:.0f} s")
    return lines
