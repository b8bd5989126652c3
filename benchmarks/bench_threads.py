"""``MLNClassifier().fit`` on an idle and on a busy machine: the library's thread choice.

For each case (the default nets on small data, and a larger CNN set), the median wall time
of ``--repeats`` fits through the public API:

* ``library``: ``MLNClassifier()`` as shipped (``n_threads="auto"``), called at torch's
  default thread count;
* ``caller's threads``: ``MLNClassifier(n_threads=None)`` at torch's default thread count,
  what every fit did before the library picked its threads;
* ``one thread``: ``MLNClassifier(n_threads=None)`` called at ``torch.set_num_threads(1)``.

Busy: as many other processes as cores spin in pure Python for the whole row. Targets:
busy, ``library`` at most 2x ``one thread``; idle, ``library`` no slower than ``caller's
threads``. Run it on a machine with nothing else running.

    python benchmarks/bench_threads.py
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from sklearn_mln import MLNClassifier
from sklearn_mln.datasets import load_digits_images, load_fashion_mnist
from sklearn_mln.toolkit import atomic_write_bytes, provenance, provenance_lines

RESULTS = Path(__file__).parent / "results" / "threads"


def _spin(stop) -> None:
    while not stop.is_set():
        sum(range(10_000))


def _cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    digits, digit_labels = load_digits_images(return_X_y=True)
    X, y = load_fashion_mnist("train", return_X_y=True)

    def per_class(k: int):
        rows = np.concatenate([np.flatnonzero(y == c)[:k] for c in range(10)])
        return X[rows], y[rows]

    return {
        "MLP, 100 flat digits": (digits[:100].reshape(100, -1), digit_labels[:100]),
        "CNN, Fashion-MNIST 10 per class": per_class(10),
        "CNN, Fashion-MNIST 50 per class": per_class(50),
    }


def _median_fit(X, y, repeats: int, caller_threads: int, **params) -> float:
    previous = torch.get_num_threads()
    torch.set_num_threads(caller_threads)
    try:
        times = []
        for _ in range(repeats):
            tick = time.perf_counter()
            MLNClassifier(random_state=0, **params).fit(X, y)
            times.append(time.perf_counter() - tick)
        return float(np.median(times))
    finally:
        torch.set_num_threads(previous)


def main(repeats: int = 3) -> int:
    started = time.perf_counter()
    default = torch.get_num_threads()
    rows = []
    for load in ("idle", "busy"):
        stop, spinners = multiprocessing.Event(), []
        if load == "busy":
            cores = os.cpu_count() or 1
            spinners = [multiprocessing.Process(target=_spin, args=(stop,)) for _ in range(cores)]
            for p in spinners:
                p.start()
            time.sleep(2)
        try:
            for name, (X, y) in _cases().items():
                row = {"case": name, "load": load}
                row["library"] = _median_fit(X, y, repeats, default)
                row["caller's threads"] = _median_fit(X, y, repeats, default, n_threads=None)
                row["one thread"] = _median_fit(X, y, repeats, 1, n_threads=None)
                row["library threads"] = MLNClassifier(random_state=0).fit(X, y).n_threads_
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
        finally:
            stop.set()
            for p in spinners:
                p.join()
    meta = provenance(seed=0, started=started, threads=default)
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(
        RESULTS / "threads.json", json.dumps({"rows": rows, **meta}, indent=1).encode()
    )
    lines = ["# MLNClassifier().fit: threads on an idle and a busy machine", ""]
    lines += provenance_lines(meta)
    lines += [
        "",
        f"Median of {repeats} fits, wall seconds; torch's default here is {default} threads. "
        "`library`: `MLNClassifier()` as shipped; `caller's threads`: `n_threads=None` at "
        "torch's default (every fit before the library chose); `one thread`: `n_threads=None` "
        "called at one thread. Busy: one pure-Python spinning process per core.",
        "",
        "| case | machine | library | caller's threads | one thread | library / one thread | "
        "library / caller's | threads the library chose |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lib, caller, one = r["library"], r["caller's threads"], r["one thread"]
        chosen = r["library threads"] or f"caller's ({default})"
        lines.append(
            f"| {r['case']} | {r['load']} | {lib:.3f} | {caller:.3f} | {one:.3f} | "
            f"{lib / one:.2f}x | {lib / caller:.2f}x | {chosen} |"
        )
    atomic_write_bytes(RESULTS / "threads.md", ("\n".join(lines) + "\n").encode())
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
