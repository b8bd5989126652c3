"""Regenerate the shipped Fashion-MNIST meta-loss from its recorded configuration; compare.

Everything about the run is read from the shipped file itself: the evolver's parameters
(``metadata["params"]``), the pool size (``n_samples``), the number of generations and the
re-evaluated fitness, and the path of its evolution log, whose progress bar recorded every
generation's best and mean fitness (4 decimals), step size (3 digits) and failures. The pool is the
one the command line drew: a stratified ``n_samples`` subsample (seed ``random_state``) of
the Fashion-MNIST training split.

Three checks, from cheap to complete:

``generations [--generations N]``
    Run the recorded configuration for the first ``N`` generations (default 3; about a
    minute each on 2 cores) and compare each generation with the log, at the log's
    precision.
``reevaluate``
    Re-evaluate the shipped weights on the recorded run's re-evaluation tasks (the
    evolver draws them from ``random_state`` before anything that depends on ``init``, so
    an evolver started from the shipped loss draws the same ones); compare with the
    recorded ``reevaluated_fitness``.
``full [--output PATH]``
    The whole run (the recorded number of generations; about 50 minutes on the machine
    that made it). Compares the evolved weights with the shipped ones and, with
    ``--output``, saves the loss with the metadata the evolver writes.

``stamp --output PATH [--at-commit COMMIT]`` writes a ``full`` run's provenance from the
report into the file that run saved (``full --output`` does so itself).

``--at-commit COMMIT`` runs the check with the package as it was at ``COMMIT`` (extracted
with ``git archive`` into a temporary folder), e.g. the code that evolved the shipped loss.
Each check's result, with its provenance, goes into one section of ``--report`` (default
``benchmarks/results/evolution/fashion-mnist-reproduction.json``, written atomically),
named after the check and, with ``--at-commit``, the commit; ``--machine LABEL`` adds
`` on LABEL`` to the name, so a check repeated on another machine keeps the first machine's
result beside it (torch's float kernels differ between processors: results reproduce bit
for bit on the machine that made them, not across machines).

    python benchmarks/tools/regenerate_pretrained.py generations --generations 3
    python benchmarks/tools/regenerate_pretrained.py generations --generations 3 --at-commit ffcb023
    python benchmarks/tools/regenerate_pretrained.py reevaluate
    python benchmarks/tools/regenerate_pretrained.py full --output fashion-mnist.mln   # ~1 hour
    python benchmarks/tools/regenerate_pretrained.py stamp --output fashion-mnist.mln --at-commit C
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "sklearn_mln" / "pretrained" / "fashion-mnist.mln"
REPORT = ROOT / "benchmarks" / "results" / "evolution" / "fashion-mnist-reproduction.json"
#: parameters that say how a run was executed, not what it computes
EXECUTION = ("n_jobs", "verbose", "max_time", "checkpoint_path", "n_generations", "device")
_BAR = re.compile(
    r"(\d+)/\d+ \[[^\]]*?best=([0-9.]+), fails=(\d+), mean=([0-9.]+), sigma=([0-9.e-]+)\]"
)


def logged_generations(log_text: str) -> list[dict]:
    """Per generation, the values the progress bar printed, as printed."""
    seen = {}
    for count, best, fails, mean, sigma in _BAR.findall(log_text):
        record = {"best": best, "mean": mean, "sigma": sigma, "fails": fails}
        seen.setdefault(int(count) - 1, record)
    return [seen[g] for g in sorted(seen)]


def as_logged(record: dict) -> dict:
    """A history_ entry formatted as MLNEvolver's progress bar prints it."""
    return {
        "best": f"{record['best_fitness']:.4f}",
        "mean": f"{record['mean_fitness']:.4f}",
        "sigma": f"{record['sigma']:.3g}",
        "fails": str(record["n_failures"]),
    }


def theta_sha256(theta) -> str:
    import numpy as np

    return hashlib.sha256(np.ascontiguousarray(theta, dtype=np.float64).tobytes()).hexdigest()


# ----------------------------------------------------------------------------- the runs
def _pool(metadata: dict):
    from sklearn.model_selection import train_test_split

    from sklearn_mln.datasets import load_fashion_mnist

    X, y = load_fashion_mnist("train", return_X_y=True)
    X, _, y, _ = train_test_split(
        X,
        y,
        train_size=metadata["n_samples"],
        stratify=y,
        random_state=metadata["params"]["random_state"],
    )
    return X, y


def _evolver_params(metadata: dict, n_jobs: int) -> dict:
    params = {k: v for k, v in metadata["params"].items() if k not in EXECUTION}
    params["hidden_sizes"] = tuple(params["hidden_sizes"])
    return {**params, "n_jobs": n_jobs, "verbose": 0}


def _history(evolver) -> list[dict]:
    return [{k: v for k, v in h.items() if k != "seconds"} for h in evolver.history_]


def run(mode: str, n_generations: int, n_jobs: int, output: str | None) -> dict:
    """The raw result of one check, computed with whichever ``sklearn_mln`` is importable."""
    import numpy as np

    import sklearn_mln
    from sklearn_mln import MLNEvolver, load_meta_loss

    shipped = load_meta_loss(SHIPPED)
    metadata = shipped.metadata
    X, y = _pool(metadata)
    params = _evolver_params(metadata, n_jobs)
    started = time.perf_counter()
    if mode == "reevaluate":
        # a one-generation run of 2 candidates from the shipped loss: its "start" entry is
        # the shipped weights, re-evaluated on the recorded run's tasks
        params.update(init=shipped, popsize=2, n_tasks=1, n_generations=1)
        evolver = MLNEvolver(**params).fit(X, y)
        labels = evolver.reevaluation_["labels"]
        result = {"fitness": evolver.reevaluation_["fitness"][labels.index("start")]}
    elif mode == "generations":
        # the final re-evaluation does not change the generations: keep it to one task
        params.update(n_reeval_tasks=1, n_generations=n_generations)
        evolver = MLNEvolver(**params).fit(X, y)
        result = {"history": _history(evolver)}
    else:
        evolver = MLNEvolver(**params, n_generations=metadata["generations"]).fit(X, y)
        theta = evolver.meta_loss_.get_flat_params()
        result = {
            "history": _history(evolver),
            "reevaluated_fitness": evolver.best_fitness_,
            "theta_sha256": theta_sha256(theta),
            "max_abs_theta_difference": float(np.abs(theta - shipped.get_flat_params()).max()),
        }
        if output is not None:
            evolver.meta_loss_.metadata.update(
                dataset="fashion-mnist",
                data=(
                    f"Fashion-MNIST training split, stratified {metadata['n_samples']}-image "
                    f"pool (seed {metadata['params']['random_state']})"
                ),
            )
            evolver.meta_loss_.save(output)
            result["output"] = output
    result["package"] = str(Path(sklearn_mln.__file__).parent)
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def run_at_commit(commit: str, argv: list[str]) -> dict:
    """:func:`run` in a subprocess that imports the package as it was at ``commit``."""
    with tempfile.TemporaryDirectory() as tree:
        archive = subprocess.run(
            ["git", "archive", commit], cwd=ROOT, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
        result_path = Path(tree) / "result.json"
        env = {**os.environ, "PYTHONPATH": tree}
        subprocess.run(
            [sys.executable, __file__, *argv, "--worker-output", str(result_path)],
            env=env,
            check=True,
        )
        return json.loads(result_path.read_text())


# ----------------------------------------------------------------------------- comparison
def compare(mode: str, result: dict) -> dict:
    """What reproduced: the comparison of ``result`` with the shipped file and its log."""
    from sklearn_mln import load_meta_loss

    metadata = load_meta_loss(SHIPPED).metadata
    if mode == "reevaluate":
        recorded = metadata["reevaluated_fitness"]
        return {
            "recorded_fitness": recorded,
            "reevaluated_fitness": result["fitness"],
            "difference": result["fitness"] - recorded,
            "bit_for_bit": result["fitness"] == recorded,
        }
    logged = logged_generations((ROOT / metadata["log"]).read_text(encoding="utf-8"))
    rows = []
    for record in result["history"]:
        g = record["generation"]
        rows.append({"generation": g, "logged": logged[g], "reproduced": as_logged(record)})
    first_mismatch = next((r["generation"] for r in rows if r["logged"] != r["reproduced"]), None)
    summary = {"generations": rows, "first_mismatch": first_mismatch}
    if mode == "full":
        summary["same_weights"] = result["max_abs_theta_difference"] == 0.0
        summary["max_abs_theta_difference"] = result["max_abs_theta_difference"]
        summary["recorded_fitness"] = metadata["reevaluated_fitness"]
        summary["reevaluated_fitness"] = result["reevaluated_fitness"]
    return summary


def write_report(path: Path, section: str, entry: dict) -> None:
    from sklearn_mln.toolkit import atomic_write_bytes

    report = json.loads(path.read_text()) if path.exists() else {}
    report[section] = entry
    atomic_write_bytes(path, (json.dumps(report, indent=1, sort_keys=True) + "\n").encode())


def _rev_parse(revision: str) -> str:
    return subprocess.run(
        ["git", "rev-parse", revision], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()


def _relative(path: Path) -> str:
    try:
        return path.resolve().relative_to(ROOT).as_posix()
    except ValueError:  # a report outside the repository
        return str(path)


def stamp_regenerated(path: Path, entry: dict, report: Path) -> None:
    """Record in the regenerated file what made it: the provenance of the run that made it
    (its command is the file's ``command`` and ``regenerate``), the commit of the code
    that evolved it, the log it reproduces and that run's evolution time (the shipped
    file's) and where the comparison is.

    The evolver of an older commit writes no provenance of its own; this is written by the
    program, never by hand. ``stamp`` mode applies it again from the report.
    """
    from sklearn_mln import load_meta_loss

    loss = load_meta_loss(path)
    record = entry["provenance"]
    shipped = load_meta_loss(SHIPPED).metadata
    loss.metadata.update(
        provenance=record,
        command=record["command"],
        regenerate=record["command"],
        date=record["date"],
        code_commit=entry["code_commit"],
        log=shipped["log"],
        # how long the run it reproduces took (on 2 cores, n_jobs=-1); this one's own wall
        # time is in its provenance
        evolution_seconds=shipped.get("evolution_seconds"),
        reproduction=_relative(report),
        same_weights_as_shipped=entry["comparison"].get("same_weights"),
    )
    loss.save(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("generations", "reevaluate", "full", "stamp"))
    parser.add_argument("--generations", type=int, default=3)
    parser.add_argument("--n-jobs", type=int, default=-1)
    parser.add_argument("--output", default=None, help="full: where to save the loss")
    parser.add_argument("--at-commit", default=None, help="run the package of this commit")
    parser.add_argument("--report", type=Path, default=REPORT)
    parser.add_argument(
        "--machine", default=None, help="label of the machine, when not the one that made it"
    )
    parser.add_argument("--worker-output", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    if args.worker_output is not None:  # inside run_at_commit: compute only
        result = run(args.mode, args.generations, args.n_jobs, args.output)
        Path(args.worker_output).write_text(json.dumps(result))
        return 0

    if args.mode == "stamp":  # the report's full run, stamped into its --output file
        commit = _rev_parse(args.at_commit) if args.at_commit else None
        section = "full" + (f"@{commit[:7]}" if commit else "")
        entry = json.loads(args.report.read_text())[section]
        stamp_regenerated(Path(args.output), entry, args.report)
        return 0
    started = time.perf_counter()
    if args.at_commit is not None:
        commit = _rev_parse(args.at_commit)
        inner = [a for a in argv if a != "--at-commit" and a != args.at_commit]
        result = run_at_commit(commit, inner)
    else:
        commit = None
        result = run(args.mode, args.generations, args.n_jobs, args.output)

    import torch

    from sklearn_mln import load_meta_loss
    from sklearn_mln.toolkit import provenance

    section = args.mode + (f"@{commit[:7]}" if commit else "")
    section += f" on {args.machine}" if args.machine else ""
    entry = {
        "comparison": compare(args.mode, result),
        "result": result,
        "code_commit": commit,
        "shipped_theta_sha256": theta_sha256(load_meta_loss(SHIPPED).get_flat_params()),
        "provenance": provenance(started=started, threads=torch.get_num_threads()),
    }
    write_report(args.report, section, entry)
    if args.mode == "full" and args.output is not None:
        stamp_regenerated(Path(args.output), entry, args.report)
    print(json.dumps(entry["comparison"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
