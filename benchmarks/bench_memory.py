"""How much memory does one generation of evolution take on a large pool?

One ``MLNEvolver`` generation (popsize 32 x 8 tasks, the default CNN, ``n_jobs=2``) with all
60000 Fashion-MNIST training images as the pool, run in a fresh Python process. When the fit
returns, that process reads its own peak resident set size (``VmHWM`` in
``/proc/<pid>/status``) and its direct children's (the joblib workers, still alive: joblib
reuses them). The result is the sum of those peaks: an upper bound on what the run held at
once, since the processes need not peak together. Linux only (it reads ``/proc``).

    python benchmarks/bench_memory.py            # full run (~6 min and ~2 GiB on 2 cores)
    python benchmarks/bench_memory.py --quick    # smoke run (a 2000-image pool, ~20 s)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from sklearn_mln import MLNEvolver
from sklearn_mln.datasets import load_fashion_mnist
from sklearn_mln.toolkit import provenance, provenance_lines, write_result_files

RESULTS = Path(__file__).parent / "results" / "memory"
SEED = 0
GiB = 2**30


def setting(quick: bool) -> dict:
    """The generation measured: the full one, or a tiny one for a smoke run."""
    if quick:
        return dict(popsize=4, n_tasks=2, pool=2000, n_jobs=2, inner_steps=20)
    return dict(popsize=32, n_tasks=8, pool=60000, n_jobs=2, inner_steps=100)


def _peak_rss(pid: int | str) -> int | None:
    """``VmHWM`` of a process in bytes, ``None`` where it cannot be read."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def _children(pid: int) -> list[str]:
    """The ids of ``pid``'s direct children."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as f:
                stat = f.read()
        except OSError:
            continue
        # the name, in brackets, may hold spaces: the parent id is the 2nd field after it
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(entry)
    return found


def generation_in_this_process(params: dict) -> dict:
    """Run one generation here, then read this process's and its children's peaks."""
    X, y = load_fashion_mnist("train", return_X_y=True)
    if params["pool"] < len(y):
        rows = np.random.RandomState(SEED).permutation(len(y))[: params["pool"]]
        X, y = X[rows], y[rows]
    start = time.perf_counter()
    MLNEvolver(
        popsize=params["popsize"],
        n_tasks=params["n_tasks"],
        inner_steps=params["inner_steps"],
        n_generations=1,
        n_reeval_tasks=1,
        n_jobs=params["n_jobs"],
        random_state=SEED,
    ).fit(X, y)
    seconds = time.perf_counter() - start
    workers = [_peak_rss(p) for p in _children(os.getpid())]
    return {
        "parent": _peak_rss(os.getpid()),
        "workers": [w for w in workers if w],
        "seconds": seconds,
    }


def peak_rss_of_generation(params: dict) -> dict:
    """Peak RSS (parent + joblib workers) of one generation, measured in a fresh process."""
    command = [sys.executable, __file__, "--in-this-process", json.dumps(params)]
    out = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "parent_peak_bytes": data["parent"],
        "worker_peak_bytes": data["workers"],
        "total_peak_gib": (data["parent"] + sum(data["workers"])) / GiB,
        "seconds": data["seconds"],
    }


def markdown(result: dict) -> str:
    s, m = result["setting"], result["memory"]
    workers = ", ".join(f"{w / GiB:.2f}" for w in m["worker_peak_bytes"]) or "none"
    return "\n".join(
        [
            "# Peak memory of one generation",
            "",
            *provenance_lines(result["provenance"]),
            "",
            f"`MLNEvolver`, default CNN, popsize {s['popsize']} x {s['n_tasks']} tasks, "
            f"{s['inner_steps']} inner steps, a pool of {s['pool']} Fashion-MNIST training "
            f"images, `n_jobs={s['n_jobs']}`: one generation in {m['seconds']:.0f} s.",
            "",
            "| process | peak RSS (GiB) |",
            "|---|---|",
            f"| parent | {m['parent_peak_bytes'] / GiB:.2f} |",
            f"| children (joblib's workers and helpers) | {workers} |",
            f"| sum of the peaks | {m['total_peak_gib']:.2f} |",
        ]
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument(
        "--output", default=None, help="path without suffix; default: results/memory/memory"
    )
    parser.add_argument("--in-this-process", metavar="PARAMS", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.in_this_process:  # the measured process: print its peaks for the caller
        print(json.dumps(generation_in_this_process(json.loads(args.in_this_process))))
        return 0
    started = time.perf_counter()
    record = provenance(seed=SEED, threads=torch.get_num_threads())  # the commit run from
    params = setting(args.quick)
    result = {"setting": params, "memory": peak_rss_of_generation(params)}
    result["provenance"] = {**record, "wall_seconds": round(time.perf_counter() - started, 2)}
    table = markdown(result)
    print("\n" + table)
    name = "memory-quick" if args.quick else "memory"
    output = Path(args.output) if args.output else RESULTS / name
    write_result_files(output, result, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
