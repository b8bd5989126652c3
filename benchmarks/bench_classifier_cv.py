"""MLNClassifierCV against GridSearchCV and MLNClassifier(): wall time and accuracy (issue 25).

Speed -- on one Fashion-MNIST test task of the small-data benchmark (v2) per row, one
process and one torch thread, the wall time of

  MLNClassifierCV().fit            the default grid, every (candidate, fold) of a step size
                                   trained as one population, the epochs scored on the way
  GridSearchCV(MLNClassifier(), the same candidates, cv=search.cv_).fit
                                   the same search, one fit at a time
  MLNClassifier().fit              one fit with the fixed default

for the default MLP on flattened images and the default small CNN on images (targets:
>= 5x faster than GridSearchCV for the MLP, >= 2x for the CNN; fit <= 20x one
MLNClassifier().fit for the MLP). The two searches' fold scores are compared too.

Accuracy -- on the first ``--n-tasks`` test tasks of each v2 row (each task's own k-shot
training set only; the rest of the test split scores it), paired with the same
``random_state``: ``MLNClassifierCV()`` against ``MLNClassifier()`` and against the row's
tuned best classical setting (tuned on 20 separate tasks, read from
``benchmarks/results/small_data_v2_mlp_mlp2/results.json``). CNN rows are left out: a
CNN search costs about 100 s a task on one core.

    taskset -c 0 python benchmarks/bench_classifier_cv.py            # about 15 minutes
    taskset -c 0 python benchmarks/bench_classifier_cv.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import GridSearchCV

from sklearn_mln import MLP, MLNClassifier, MLNClassifierCV
from sklearn_mln.benchmark import shared_tasks, summarize, task_rng
from sklearn_mln.datasets import load_splits
from sklearn_mln.toolkit import provenance, provenance_lines

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "classifier_cv"
V2_RESULTS = HERE / "results" / "small_data_v2_mlp_mlp2" / "results.json"
SEED = 0
#: the v2 benchmark's data: Fashion-MNIST pool 4000 / test 3000, seed 0, 100 test tasks
POOL, TEST, V2_TEST_TASKS = 4000, 3000, 100
ARCHITECTURES = {
    "mlp": {},
    "mlp2": {"module": MLP, "module__hidden_sizes": (128, 64)},
}


def test_tasks(X_test, y_test, k: int, n: int):
    """The first ``n`` of the v2 row's test tasks: (X_train, y_train, X_val, y_val) each."""
    batch = shared_tasks(X_test, y_test, k, V2_TEST_TASKS, task_rng(SEED, 1, k))
    for t in range(n):
        scored = batch.y_val[t] >= 0
        yield batch.X_train[t], batch.y_train[t], X_test[scored], batch.y_val[t][scored]


def flat(X: np.ndarray) -> np.ndarray:
    return X.reshape(len(X), -1)


def seconds(call) -> tuple[float, float]:
    """Wall and CPU seconds of ``call()``: on a shared core the CPU time is the steadier."""
    wall, cpu = time.perf_counter(), time.process_time()
    call()
    return time.perf_counter() - wall, time.process_time() - cpu


# ----------------------------------------------------------------------------- speed
def speed_row(name: str, X: np.ndarray, y: np.ndarray, repeats: int) -> dict:
    MLNClassifierCV(random_state=SEED, param_grid={"max_epochs": [2]}, cv=2).fit(X, y)  # warm
    load = os.getloadavg()[0]
    ones = [seconds(lambda: MLNClassifier(random_state=SEED).fit(X, y)) for _ in range(repeats)]
    one, one_cpu = np.median(ones, axis=0)
    search = MLNClassifierCV(random_state=SEED)
    cv_time, cv_cpu = seconds(lambda: search.fit(X, y))
    candidates = [{k: [v] for k, v in params.items()} for params in search.cv_results_["params"]]
    grid = GridSearchCV(MLNClassifier(random_state=SEED), candidates, cv=search.cv_)
    grid_time, grid_cpu = seconds(lambda: grid.fit(X, y))
    diff = np.abs(search.cv_results_["mean_test_score"] - grid.cv_results_["mean_test_score"])
    return {
        "row": name,
        "n_samples": len(y),
        "n_candidates": len(candidates),
        "n_splits": search.n_splits_,
        "population": search.fallback_reason_ is None,
        "mlnclassifiercv_s": round(cv_time, 3),
        "gridsearchcv_s": round(grid_time, 3),
        "mlnclassifier_s": round(float(one), 3),
        "speedup_vs_gridsearchcv": round(grid_time / cv_time, 2),
        "times_one_fit": round(cv_time / one, 2),
        "cpu_s": {
            "mlnclassifiercv": round(cv_cpu, 3),
            "gridsearchcv": round(grid_cpu, 3),
            "mlnclassifier": round(one_cpu, 3),
        },
        "cpu_speedup_vs_gridsearchcv": round(grid_cpu / cv_cpu, 2),
        "cpu_times_one_fit": round(cv_cpu / one_cpu, 2),
        "load_average_before": round(load, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
        "same_best_params": search.best_params_ == grid.best_params_,
        "max_mean_score_difference": float(diff.max()),
    }


# ----------------------------------------------------------------------------- accuracy
def tuned_best(architecture: str, k: int) -> dict:
    """The v2 row's tuned best classical setting as MLNClassifier parameters."""
    rows = json.loads(V2_RESULTS.read_text())["results"]
    row = next(r for r in rows if r["architecture"] == architecture and r["k"] == k)
    pick = row["losses"][row["baseline"]]
    args = ", ".join(f"{key}={value}" for key, value in pick["params"].items())
    loss = f"{row['baseline']}({args})" if args else row["baseline"]
    return {"meta_loss": loss, "lr": pick["lr"], "max_epochs": pick["steps"]}


def accuracy_row(architecture: str, k: int, X_test, y_test, n_tasks: int) -> dict:
    module = ARCHITECTURES[architecture]
    best = tuned_best(architecture, k)
    arms = {"MLNClassifierCV()": [], "MLNClassifier()": [], "tuned best": []}
    chosen = []
    for t, (X, y, X_val, y_val) in enumerate(test_tasks(X_test, y_test, k, n_tasks)):
        state = SEED + t
        search = MLNClassifierCV(random_state=state, **module).fit(flat(X), y)
        chosen.append(search.best_params_)
        fixed = MLNClassifier(random_state=state, **module).fit(flat(X), y)
        tuned = MLNClassifier(random_state=state, **module, **best).fit(flat(X), y)
        for arm, clf in zip(arms, (search, fixed, tuned)):
            arms[arm].append(clf.score(flat(X_val), y_val))
    accuracies = {arm: np.asarray(values) for arm, values in arms.items()}
    return {
        "architecture": architecture,
        "k": k,
        "n_tasks": n_tasks,
        "tuned_best": best,
        "accuracies": {arm: a.tolist() for arm, a in accuracies.items()},
        "against_default": summarize(accuracies, "MLNClassifier()"),
        "against_tuned_best": summarize(accuracies, "tuned best"),
        "chosen": chosen,
    }


# ----------------------------------------------------------------------------- report
def markdown(result: dict) -> str:
    lines = ["# MLNClassifierCV: speed and accuracy", ""]
    lines += provenance_lines(result["provenance"]) + [""]
    lines += [
        "## Wall time (one process, one torch thread)",
        "",
        "The default grid and `cv` of `MLNClassifierCV(random_state=0)`; `GridSearchCV` gets "
        "the same candidates and folds (`cv=search.cv_`). Targets: >= 5x faster than "
        "GridSearchCV for the MLP, >= 2x for the CNN; at most 20x one `MLNClassifier().fit` "
        "for the MLP. Wall seconds, and in brackets the process's CPU seconds (steadier "
        "where the core is shared; the load average before and after each row is in "
        "results.json).",
        "",
        "| row | samples | candidates x folds | MLNClassifierCV s | GridSearchCV s | "
        "MLNClassifier s | speed-up vs GridSearchCV | x one fit | same best | "
        "max mean-score diff |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["speed"]:
        cpu = r["cpu_s"]
        lines.append(
            f"| {r['row']} | {r['n_samples']} | {r['n_candidates']} x {r['n_splits']} | "
            f"{r['mlnclassifiercv_s']:.2f} ({cpu['mlnclassifiercv']:.2f}) | "
            f"{r['gridsearchcv_s']:.2f} ({cpu['gridsearchcv']:.2f}) | "
            f"{r['mlnclassifier_s']:.3f} ({cpu['mlnclassifier']:.3f}) | "
            f"{r['speedup_vs_gridsearchcv']:.1f}x ({r['cpu_speedup_vs_gridsearchcv']:.1f}x) | "
            f"{r['times_one_fit']:.1f}x ({r['cpu_times_one_fit']:.1f}x) | "
            f"{r['same_best_params']} | "
            f"{r['max_mean_score_difference']:.1e} |"
        )
    lines += [
        "",
        "## Accuracy on the v2 test tasks (paired, each task's own k-shot data only)",
        "",
        "Δ is `MLNClassifierCV()` minus the other, in accuracy points, with a 95 % CI, "
        "wins / ties / losses and a two-sided Wilcoxon p.",
        "",
        "| architecture | k | tasks | MLNClassifierCV() | MLNClassifier() | Δ vs default | "
        "W/T/L | p | tuned best (v2) | Δ vs tuned best | W/T/L | p |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["accuracy"]:
        cv, default = (next(s for s in r["against_default"] if s["loss"] == a)
                       for a in ("MLNClassifierCV()", "MLNClassifier()"))  # fmt: skip
        tuned = next(s for s in r["against_tuned_best"] if s["loss"] == "MLNClassifierCV()")
        best = next(s for s in r["against_default"] if s["loss"] == "tuned best")
        lines.append(
            f"| {r['architecture']} | {r['k']} | {r['n_tasks']} | {cv['mean']:.4f} | "
            f"{default['mean']:.4f} | {100 * cv['delta']:+.2f} ± {100 * cv['ci95']:.2f} | "
            f"{cv['wins']}/{cv['ties']}/{cv['losses']} | {cv['p_wilcoxon']:.2g} | "
            f"{best['mean']:.4f} | {100 * tuned['delta']:+.2f} ± {100 * tuned['ci95']:.2f} | "
            f"{tuned['wins']}/{tuned['ties']}/{tuned['losses']} | {tuned['p_wilcoxon']:.2g} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: tiny rows")
    parser.add_argument("--n-tasks", type=int, default=20, help="test tasks per accuracy row")
    parser.add_argument("--repeats", type=int, default=3, help="timings of one fit (median)")
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args(argv)
    started = time.perf_counter()
    record = provenance(seed=SEED, threads=1)  # the commit the run starts from
    torch.set_num_threads(1)
    _, _, X_test, y_test = load_splits("fashion-mnist", pool_size=POOL, test_size=TEST, seed=SEED)
    _, y_test = np.unique(y_test, return_inverse=True)
    speed_rows = [("mlp", 5), ("mlp", 10), ("cnn", 5)] if not args.quick else [("mlp", 5)]
    speed = []
    for arch, k in speed_rows:
        X, y, _, _ = next(test_tasks(X_test, y_test, k, 1))
        name = f"{'MLP, flattened' if arch == 'mlp' else 'small CNN, images'} k = {k}"
        speed.append(speed_row(name, flat(X) if arch == "mlp" else X, y, args.repeats))
        print(json.dumps(speed[-1]), flush=True)
    rows = [("mlp", 5), ("mlp", 10), ("mlp2", 5), ("mlp2", 10)]
    n_tasks = 2 if args.quick else args.n_tasks
    accuracy = []
    for arch, k in rows[:1] if args.quick else rows:
        accuracy.append(accuracy_row(arch, k, X_test, y_test, n_tasks))
        print(json.dumps(accuracy[-1]["against_default"]), flush=True)
    result = {"speed": speed, "accuracy": accuracy}
    result["provenance"] = {**record, "wall_seconds": round(time.perf_counter() - started, 2)}
    table = markdown(result)
    print("\n" + table)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    for name, text in (("results.json", json.dumps(result, indent=2)), ("results.md", table)):
        tmp = output / (name + ".tmp")
        tmp.write_text(text + "\n")
        os.replace(tmp, output / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
