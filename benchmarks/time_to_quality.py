"""Time to a good loss: what ``MLNEvolver.fit`` reaches against wall time (issue 12).

CNN on Fashion-MNIST, 10-shot, the shipped loss's evolution settings (pool: the stratified
6000-image subsample of the training split, seed 0; popsize 12 x 4 tasks, 100 SGD steps,
sigma0 0.05, 16 re-evaluation tasks). One *quality* scale for everything: the mean accuracy,
on 50 fixed 10-shot tasks drawn from 10000 other training-split images (never the pool,
never the test split), of classifiers trained with the loss at its own step size for 100
steps (:func:`sklearn_mln.benchmark._tuning.score_settings`).

Each evolution configuration runs through the public API, ``fit`` after ``fit`` on one
checkpoint with a growing ``n_generations``; after each, ``meta_loss_`` (what a user who
stopped there would get) is scored. Its time is the run's generation seconds plus the last
call's set-up and shortlist re-evaluation: what one uninterrupted run of that length costs.

``grid`` is what a user would otherwise run: label smoothing over the benchmark's ε grid x
lr (0.03, 0.1, 0.3, 1.0), 100 steps, picked on 20 pool tasks (as evolution picks on pool
tasks), its pick scored on the fixed tasks; ``references`` scores the shipped loss and the
tuned label smoothing ``MLNClassifier`` defaults to (the ``tuned-start`` configurations'
starting point) on the fixed tasks.

Each configuration writes ``<output>/<name>.json`` with its provenance (an evolution also
its final loss, ``<output>/<name>.mln``); ``report`` merges
them into ``time_to_quality.md`` and ``time_to_quality.png``. One torch thread, one
process (``n_jobs=1``): pin each run to a core (``taskset -c N``) and run two at once.

    taskset -c 1 python benchmarks/time_to_quality.py run references grid  # ~15 min
    taskset -c 1 python benchmarks/time_to_quality.py run tuned-start      # ~30 min
    taskset -c 0 python benchmarks/time_to_quality.py run as-shipped --budget-minutes 8
    taskset -c 0 python benchmarks/time_to_quality.py run tuned-start-joint-long \
        --budget-minutes 40 --checkpoints 25 50
    python benchmarks/time_to_quality.py report
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from sklearn_mln import ClassicalLoss, MLNEvolver, load_pretrained
from sklearn_mln.benchmark import CLASSICAL_GRIDS, Setting, score_settings, shared_tasks, task_rng
from sklearn_mln.datasets import load_fashion_mnist
from sklearn_mln.toolkit import (
    AUTO_TRAINING,
    architecture_factory,
    atomic_write_bytes,
    provenance,
    provenance_lines,
)

RESULTS = Path(__file__).parent / "results" / "time_to_quality"
SEED = 0
K, STEPS, N_FIXED_TASKS, N_GRID_TASKS = 10, 100, 50, 20
GRID_LR = (0.03, 0.1, 0.3, 1.0)
#: the shipped loss's run (its metadata), apart from where it starts and its step size
SHIPPED_RUN = dict(
    n_shots=K,
    n_tasks=4,
    popsize=12,
    sigma0=0.05,
    inner_steps=STEPS,
    n_reeval_tasks=16,
    validation_size=0.5,
    n_jobs=1,
    random_state=SEED,
)
TUNED_LOSS, TUNED_LR, _ = AUTO_TRAINING["images"]
CONFIGS = {
    "as-shipped": dict(init="label_smoothing", inner_lr=0.03),
    "tuned-start": dict(init=TUNED_LOSS, inner_lr=TUNED_LR),
    "tuned-start-true-class": dict(init=TUNED_LOSS, inner_lr=TUNED_LR, true_class_input=True),
    "tuned-start-progress": dict(init=TUNED_LOSS, inner_lr=TUNED_LR, progress_input=True),
    "tuned-start-joint": dict(init=TUNED_LOSS, inner_lr=TUNED_LR, structure="joint"),
    # the same run, longer, scored less often: does the joint network add anything given
    # the generations the joint loss B had (66)?
    "tuned-start-joint-long": dict(init=TUNED_LOSS, inner_lr=TUNED_LR, structure="joint"),
}
#: n_generations after which meta_loss_ is scored
CHECKPOINTS = (2, 6, 12, 20, 30, 45, 62)


class Problem:
    """The pool evolution sees and the fixed tasks every loss is scored on."""

    def __init__(self):
        X, y = load_fashion_mnist("train", return_X_y=True)
        rest, self.pool = train_test_split(
            np.arange(len(y)), test_size=6000, stratify=y, random_state=SEED
        )
        _, held_out = train_test_split(rest, test_size=10000, stratify=y[rest], random_state=1)
        self.X_pool, self.y_pool = X[self.pool], y[self.pool]
        self.X_fixed, self.y_fixed = X[held_out], y[held_out]
        self.factory = architecture_factory("cnn", X.shape[1:], 10)
        self.fixed = shared_tasks(
            self.X_fixed, self.y_fixed, K, N_FIXED_TASKS, task_rng(SEED, 7, K)
        )

    def fixed_accuracy(self, loss, lr: float) -> np.ndarray:
        setting = Setting("loss", (), float(lr), STEPS)
        scores = score_settings(
            [setting], {("loss", ()): loss}, self.factory, self.fixed, self.X_fixed
        )
        return scores.accuracy[setting]


def point(problem: Problem, loss, lr: float, seconds: float, **extra) -> dict:
    accuracy = problem.fixed_accuracy(loss, lr)
    return {
        "seconds": round(seconds, 1),
        "fitness": float(accuracy.mean()),
        "sem": float(accuracy.std(ddof=1) / np.sqrt(len(accuracy))),
        "accuracy": accuracy.tolist(),  # per fixed task: paired comparisons
        **extra,
    }


def run_references(problem: Problem) -> dict:
    shipped = load_pretrained("fashion-mnist")
    return {
        "shipped loss": point(
            problem,
            shipped,
            shipped.metadata["params"]["inner_lr"],
            shipped.metadata.get("evolution_seconds") or 0.0,
            note="its own evolution (62 generations on 2 cores)",
        ),
        "tuned label smoothing": point(
            problem,
            ClassicalLoss("label_smoothing", smoothing=0.9),
            TUNED_LR,
            0.0,
            note=f"{TUNED_LOSS} at lr {TUNED_LR}: MLNClassifier's default for images",
        ),
    }


def run_grid(problem: Problem) -> dict:
    """Label smoothing over (ε, lr), picked on pool tasks as a user would."""
    started = time.perf_counter()
    tasks = shared_tasks(problem.X_pool, problem.y_pool, K, N_GRID_TASKS, task_rng(SEED, 8, K))
    smoothings = CLASSICAL_GRIDS["label_smoothing"]["smoothing"]
    settings = [Setting("ls", (("smoothing", e),), lr, STEPS) for e in smoothings for lr in GRID_LR]
    modules = {
        ("ls", s.params): ClassicalLoss("label_smoothing", **dict(s.params)) for s in settings
    }
    scores = score_settings(settings, modules, problem.factory, tasks, problem.X_pool)
    best = max(settings, key=lambda s: scores.accuracy[s].mean())
    seconds = time.perf_counter() - started
    pick = dict(best.params) | {"lr": best.lr}
    return {"grid": point(problem, modules[("ls", best.params)], best.lr, seconds, pick=pick)}


def run_evolution(
    problem: Problem,
    name: str,
    budget_seconds: float,
    output: Path,
    checkpoints: tuple[int, ...] = CHECKPOINTS,
) -> dict:
    params = {**SHIPPED_RUN, **CONFIGS[name]}
    curve, generation_seconds, done = [], 0.0, 0
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / "run.ckpt"
        for n_generations in checkpoints:
            tick = time.perf_counter()
            evolver = MLNEvolver(**params, n_generations=n_generations, checkpoint_path=checkpoint)
            evolver.fit(problem.X_pool, problem.y_pool)
            wall = time.perf_counter() - tick
            new, done = evolver.history_[done:], len(evolver.history_)
            generation_seconds += sum(h["seconds"] for h in new)
            overhead = wall - sum(h["seconds"] for h in new)
            curve.append(
                point(
                    problem,
                    evolver.meta_loss_,
                    params["inner_lr"],
                    generation_seconds + overhead,
                    generations=n_generations,
                    chosen=evolver.reevaluation_["chosen"],
                    history=evolver.history_,
                )
            )
            print(
                f"{name}: {n_generations} generations, {curve[-1]['seconds']:.0f} s, "
                f"fitness {curve[-1]['fitness']:.4f}",
                flush=True,
            )
            if generation_seconds >= budget_seconds:
                break
    evolver.meta_loss_.save(output / f"{name}.mln")  # for the benchmark rows
    for entry in curve[:-1]:
        del entry["history"]  # the last entry's history covers the others
    return {name: {"curve": curve, "params": {k: str(v) for k, v in params.items()}}}


def write_json(path: Path, record: dict) -> None:
    atomic_write_bytes(path, (json.dumps(record, indent=1, sort_keys=True) + "\n").encode())


def _with_start_cost(results: dict, grid_seconds: float | None) -> dict:
    """Each run's points with ``seconds`` counting what its start cost: an evolution from
    the tuned label smoothing pays the grid that found it."""
    shifted = {}
    for name, entry in results.items():
        starts_tuned = CONFIGS.get(name, {}).get("init") == TUNED_LOSS
        if "curve" in entry and starts_tuned and grid_seconds is not None:
            curve = [{**p, "seconds": p["seconds"] + grid_seconds} for p in entry["curve"]]
            shifted[f"{name} (after the grid)"] = {**entry, "curve": curve}
        else:
            shifted[name] = entry
    return shifted


def _delta(point: dict, start: dict) -> str:
    """Points over the tuned label smoothing: paired over the fixed tasks (± 95 % CI) where
    both scores were kept per task, else the difference of the means."""
    if "fitness" not in start:
        return ""
    if "accuracy" in point and "accuracy" in start:
        diff = 100 * (np.asarray(point["accuracy"]) - np.asarray(start["accuracy"]))
        return f"{diff.mean():+.2f} ± {1.96 * diff.std(ddof=1) / np.sqrt(len(diff)):.2f}"
    return f"{100 * (point['fitness'] - start['fitness']):+.2f}"


def report(folder: Path) -> None:
    sections = {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}
    if not sections:
        raise SystemExit(f"No results in {folder}; run some configurations first.")
    started = time.perf_counter()
    record = provenance(seed=SEED, started=started, threads=torch.get_num_threads())
    merged = {name: e for section in sections.values() for name, e in section["results"].items()}
    grid_seconds = merged["grid"]["seconds"] if "grid" in merged else None
    start = merged.get("tuned label smoothing", {})
    lines = ["# Time to a good loss (CNN, Fashion-MNIST, 10-shot)", "", *provenance_lines(record)]
    lines += [
        "",
        f"Quality: mean accuracy on {N_FIXED_TASKS} fixed 10-shot tasks of held-out "
        "training-split images (± standard error). Time: seconds on one core, 1 torch "
        "thread (the shipped loss: its own evolution, on 2 cores). *With its start* adds, to "
        "an evolution from the tuned label smoothing, the grid that found it. Δ: points over "
        "the tuned label smoothing, paired over the tasks (± 95 % CI) where both were kept "
        "per task. The figure leaves the spread over tasks out: every loss is scored on the "
        "same tasks, and the benchmark rows give the paired tests. Each file's own "
        "provenance is in its JSON.",
        "",
        "| run | generations | seconds | with its start | fitness | Δ | loss chosen |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, entry in merged.items():
        offset = grid_seconds if CONFIGS.get(name, {}).get("init") == TUNED_LOSS else 0.0
        for p in entry.get("curve", [entry]):
            delta = _delta(p, start)
            lines.append(
                f"| {name} | {p.get('generations', '')} | {p['seconds']:.0f} "
                f"| {p['seconds'] + (offset or 0.0):.0f} | {p['fitness']:.4f} ± {p['sem']:.4f} "
                f"| {delta} | {p.get('chosen', p.get('note', ''))} |"
            )
    (folder / "time_to_quality.md").write_text("\n".join(lines) + "\n")
    from sklearn_mln.plotting import plot_time_to_quality

    ax = plot_time_to_quality(_with_start_cost(merged, grid_seconds), bands=False)
    ax.set_title("10-shot Fashion-MNIST, small CNN: quality against wall time (one core)")
    ax.figure.savefig(folder / "time_to_quality.png", dpi=120, bbox_inches="tight")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("run", "report"))
    parser.add_argument("names", nargs="*", help=f"references, grid, {', '.join(CONFIGS)}")
    parser.add_argument(
        "--budget-minutes",
        type=float,
        default=12.0,
        help="stop an evolution once its generations took this long",
    )
    parser.add_argument(
        "--checkpoints",
        type=int,
        nargs="+",
        default=CHECKPOINTS,
        help="numbers of generations after which the loss is scored",
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    if args.action == "report":
        report(args.output)
        return 0
    unknown = set(args.names) - {"references", "grid", *CONFIGS}
    if unknown or not args.names:
        parser.error(f"name what to run: references, grid, {', '.join(CONFIGS)}")
    torch.set_num_threads(1)
    problem = Problem()
    for name in args.names:
        started = time.perf_counter()
        # the commit is read before the run: the code that ran, whatever the tree becomes
        record = provenance(seed=SEED, threads=torch.get_num_threads())
        if name == "references":
            results = run_references(problem)
        elif name == "grid":
            results = run_grid(problem)
        else:
            results = run_evolution(
                problem, name, 60 * args.budget_minutes, args.output, tuple(args.checkpoints)
            )
        record["wall_seconds"] = round(time.perf_counter() - started, 2)
        write_json(args.output / f"{name}.json", {"provenance": record, "results": results})
        print(
            json.dumps(
                {k: {kk: vv for kk, vv in v.items() if kk != "curve"} for k, v in results.items()},
                default=str,
            )[:500],
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
