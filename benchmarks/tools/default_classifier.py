"""Which loss should ``MLNClassifier()`` use by default, and how far is it from the best?

Reads a benchmark v2 result (``results.json`` of ``benchmarks/small_data_v2.py``) and

1. picks the default: among the settings every row screened (the base grid: a classical
   loss with its hyperparameters, lr and steps), the one with the smallest mean *regret*
   over the rows (the row's best tuning score minus its own screening score) — chosen on
   tuning tasks only;
2. scores that one setting on every row's test tasks (the same tasks and initial weights
   as the benchmark) and reports the paired difference to the row's tuned best classical
   loss, also on the rows of the architectures it was not chosen on (mlp2, cnn-wide) where
   the sources have them;
3. trains ``MLNClassifier()`` itself through its public API, with no arguments, on the
   default CNN's 10-shot test tasks, beside ``MLNClassifier`` given the row's tuned best
   classical setting, with the same ``random_state`` per task (same initial weights), and
   reports the paired difference.

Writes ``OUTPUT.json`` and ``OUTPUT.md``.

    python benchmarks/tools/default_classifier.py benchmarks/results/default_classifier \\
        benchmarks/results/small_data_v2_cnn benchmarks/results/small_data_v2_cnn_k20 \\
        benchmarks/results/small_data_v2_cnn_k50 benchmarks/results/small_data_v2_mlp_mlp2 \\
        benchmarks/results/small_data_v2_mlp_k20_50 benchmarks/results/small_data_v2_mlp2_k20_50 \\
        benchmarks/results/small_data_v2_cnn-wide_k1_5

Rows of one architecture may come from several runs (``small_data_v2.py ARCH --ks ...``)
with the same tasks and grid; they are pooled.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from sklearn_mln import ClassicalLoss, MLNClassifier
from sklearn_mln.benchmark import (
    BenchmarkResult,
    Setting,
    TuningPoint,
    score_settings,
    shared_tasks,
    summarize,
    task_rng,
)
from sklearn_mln.datasets import load_splits
from sklearn_mln.toolkit import (
    architecture_factory,
    atomic_write_bytes,
    provenance,
    provenance_lines,
)

ARCHITECTURE, K = "cnn", 10  # the row the target is set on


def _key(point: TuningPoint) -> tuple:
    return tuple(sorted(point.params.items())), point.lr, point.steps


def choose_default(result: BenchmarkResult) -> tuple[str, dict, float, int, dict]:
    """The base-grid setting with the smallest mean tuning regret over all rows."""
    base_lr = set(result.settings.grid_lr)
    regrets: dict[tuple, list[float]] = {}
    for row in result.rows:
        classical = {n: e for n, e in row.losses.items() if e.kind == "classical"}
        best = max(e.tuning_score for e in classical.values())
        for name, entry in classical.items():
            for point in entry.tuning_grid:
                if point.lr in base_lr:
                    regret = best - point.screening_score
                    regrets.setdefault((name, *_key(point)), []).append(regret)
    n_rows = len(result.rows)
    complete = {key: np.mean(v) for key, v in regrets.items() if len(v) == n_rows}
    name, params, lr, steps = min(complete, key=complete.get)
    table = {f"{n} {dict(p)} lr {r} steps {s}": float(v) for (n, p, r, s), v in complete.items()}
    return name, dict(params), lr, steps, table


#: settings two runs must share for their rows to be compared (same tasks, same grid)
SHARED_SETTINGS = (
    "dataset", "random_state", "n_pool", "n_test", "n_tasks", "grid_lr", "grid_steps", "baselines",
)  # fmt: skip


def rows_of(results: list[BenchmarkResult], arch: str) -> BenchmarkResult:
    """Every row of ``arch`` over the runs given (a ``--ks`` run adds rows to a full one)."""
    runs = [r for r in results if arch in r.settings.architectures]
    if not runs:
        raise ValueError(f"no run given has rows of {arch!r}")
    first = runs[0].settings
    for run in runs[1:]:
        differ = [k for k in SHARED_SETTINGS if getattr(run.settings, k) != getattr(first, k)]
        if differ:
            raise ValueError(f"the {arch} runs differ in {differ}: their rows do not compare")
    rows = [row for run in runs for row in run.rows if row.architecture == arch]
    ks = [row.k for row in rows]
    if len(set(ks)) != len(ks):
        raise ValueError(f"k given twice for {arch}: {sorted(ks)}")
    return replace(runs[0], rows=rows)


def classifier_comparison(X_test, y_test, result, best: dict, seed: int) -> dict:
    """``MLNClassifier()`` against ``MLNClassifier`` with the row's tuned best, paired."""
    n_tasks = result.settings.n_tasks
    batch_rng = task_rng(seed, 1, K)
    tasks = shared_tasks(X_test, y_test, K, n_tasks, batch_rng)
    accuracy = {"MLNClassifier()": [], "tuned best": []}
    seconds = {name: 0.0 for name in accuracy}
    tuned = {
        "meta_loss": ClassicalLoss(best["name"], **best["params"]),
        "lr": best["lr"],
        "max_epochs": best["steps"],
    }
    for t in range(n_tasks):
        X_train, y_train = tasks.X_train[t], tasks.y_train[t]
        rest = tasks.y_val[t] >= 0
        for name, kwargs in (("MLNClassifier()", {}), ("tuned best", tuned)):
            started = time.perf_counter()
            clf = MLNClassifier(**kwargs, random_state=int(tasks.init_seeds[t]))
            clf.fit(X_train, y_train)
            accuracy[name].append(clf.score(X_test[rest], tasks.y_val[t][rest]))
            seconds[name] += time.perf_counter() - started
    rows = summarize({k: np.asarray(v) for k, v in accuracy.items()}, "tuned best")
    return {"accuracy": accuracy, "seconds": seconds, "summary": rows, "tuned": best}


#: the default classifier of each kind of input, as in MLNClassifier.AUTO_TRAINING
KINDS = {"images": "cnn", "flat": "mlp"}
#: the architecture of each kind the default was not chosen on: scored where a source has it
UNSEEN = {"images": "cnn-wide", "flat": "mlp2"}


def main(output: str, sources: list[str]) -> None:
    started = time.perf_counter()
    torch.set_num_threads(1)  # one thread: on a busy 2-core machine two wait on each other
    results = [BenchmarkResult.load(Path(folder) / "results.json") for folder in sources]
    report = {"defaults": {}, "rows": [], "sources": sources}
    for kind, arch in KINDS.items():
        rows = rows_of(results, arch)
        name, params, lr, steps, regrets = choose_default(rows)
        report["defaults"][kind] = {
            "architecture": arch, "loss": name, "params": params, "lr": lr, "steps": steps,
            "mean_regret": regrets[f"{name} {params} lr {lr} steps {steps}"],
        }  # fmt: skip
        report["rows"] += _score_default(rows, name, params, lr, steps)
        if any(UNSEEN[kind] in r.settings.architectures for r in results):
            unseen = rows_of(results, UNSEEN[kind])
            report["rows"] += _score_default(unseen, name, params, lr, steps)
    cnn = rows_of(results, ARCHITECTURE)
    settings = cnn.settings
    _, _, X_test, y_test = load_splits(
        settings.dataset, seed=settings.random_state, pool_size=settings.n_pool,
        test_size=settings.n_test,
    )  # fmt: skip
    row = next(r for r in cnn.rows if (r.architecture, r.k) == (ARCHITECTURE, K))
    base = row.baseline_result
    best = {"name": row.baseline, "params": base.params, "lr": base.lr, "steps": base.steps}
    report["classifier"] = classifier_comparison(X_test, y_test, cnn, best, settings.random_state)
    report["provenance"] = provenance(seed=settings.random_state, started=started)
    target = Path(output)
    atomic_write_bytes(target.with_suffix(".json"), (json.dumps(report, indent=1) + "\n").encode())
    atomic_write_bytes(target.with_suffix(".md"), markdown(report).encode())


def _score_default(
    result: BenchmarkResult, name: str, params: dict, lr: float, steps: int
) -> list[dict]:
    """The default setting on every row's test tasks, against the row's tuned best."""
    settings = result.settings
    seed = settings.random_state
    _, _, X_test, y_test = load_splits(
        settings.dataset, seed=seed, pool_size=settings.n_pool, test_size=settings.n_test
    )
    default = Setting(name, tuple(sorted(params.items())), lr, steps)
    modules = {(name, default.params): ClassicalLoss(name, **params)}
    rows = []
    for row in result.rows:
        arch, k = row.architecture, row.k
        tasks = shared_tasks(X_test, y_test, k, settings.n_tasks, task_rng(seed, 1, k))
        factory = architecture_factory(arch, X_test.shape[1:], int(y_test.max()) + 1)
        scores = score_settings([default], modules, factory, tasks, X_test)
        baseline = np.asarray(row.baseline_result.test_accuracy)
        summary = summarize({"default": scores.accuracy[default], "baseline": baseline}, "baseline")
        rows.append({"architecture": arch, "k": k, "baseline": row.baseline, "summary": summary[0]})
        print(f"[{arch} k={k}] default {summary[0]['delta'] * 100:+.2f} pt", file=sys.stderr)
    return rows


def markdown(report: dict) -> str:
    lines = [
        "# The default training of MLNClassifier",
        "",
        *provenance_lines(report["provenance"]),
        f"- from: {', '.join(f'`{s}/results.json`' for s in report['sources'])}",
        "",
        '`MLNClassifier()` (`meta_loss="auto"`) trains with, per kind of input, the classical '
        "setting with the smallest mean tuning regret over the benchmark's rows of the default "
        "classifier of that input (chosen on tuning tasks only; regret = the row's best tuning "
        "score minus the setting's screening score):",
        "",
        "| input | classifier | loss | lr | epochs | mean regret |",
        "|---|---|---|---|---|---|",
    ]
    for kind, d in report["defaults"].items():
        described = ", ".join(f"{k} {v:g}" for k, v in d["params"].items())
        lines.append(
            f"| {kind} | {d['architecture']} | {d['loss']}"
            + (f" ({described})" if described else "")
            + f" | {d['lr']:g} | {d['steps']} | {d['mean_regret']:.4f} |"
        )
    lines += [
        "",
        "The default against each row's tuned best classical loss, on the row's test tasks "
        f"(paired; {' and '.join(UNSEEN.values())} rows, where given, check the choice on "
        "architectures it was not made on):",
        "",
        "| architecture | k | tuned best classical | default: Δ pt (95 % CI) | W/T/L | p |",
        "|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        s = row["summary"]
        lines.append(
            f"| {row['architecture']} | {row['k']} | {row['baseline']} | "
            f"{100 * s['delta']:+.2f} ± {100 * s['ci95']:.2f} | "
            f"{s['wins']}/{s['ties']}/{s['losses']} | {s['p_wilcoxon']:.2g} |"
        )
    c = report["classifier"]
    tuned = c["tuned"]
    s = next(r for r in c["summary"] if r["loss"] == "MLNClassifier()")
    ref = next(r for r in c["summary"] if r["loss"] == "tuned best")
    lines += [
        "",
        f"## `MLNClassifier()` through its public API ({ARCHITECTURE}, k = {K})",
        "",
        f"{len(c['accuracy']['tuned best'])} test tasks, each trained twice with the same "
        f"`random_state`: `MLNClassifier()` (no arguments) reaches {s['mean']:.4f}; with the "
        f"row's tuned best ({tuned['name']} {tuned['params']}, lr {tuned['lr']:g}, "
        f"{tuned['steps']} epochs) {ref['mean']:.4f}: Δ {100 * s['delta']:+.2f} ± "
        f"{100 * s['ci95']:.2f} pt, wins/ties/losses {s['wins']}/{s['ties']}/{s['losses']}, "
        f"p = {s['p_wilcoxon']:.2g}.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
