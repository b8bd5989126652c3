"""What the progress input of ``tuned-start-progress`` contributes (issue 11, part 4).

On the 100 test tasks of the benchmark v2 row (CNN, k = 10; same subsamples and seeds, so
the same tasks task for task as ``benchmarks/results/small_data_v2_cnn`` and
``learned_losses_v2_cnn_k10``), at the learned loss's own benchmark pick (lr, steps):

* the loss as trained in the benchmark (told its progress every step);
* the same loss with its progress input frozen at ``DEFAULT_PROGRESS`` (never told);
* its start, label smoothing 0.9, at that same (lr, steps) -- what the network adds;
* label smoothing 0.9 at lr 0.3, 100 steps -- ``MLNClassifier()``'s default for images.

Paired differences, 95 % CI and Wilcoxon p (:func:`sklearn_mln.benchmark.summarize`),
written to ``benchmarks/results/ablations/progress_frozen.{json,md}``.

    python benchmarks/experiments/progress_frozen.py
"""

import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sklearn_mln import ClassicalLoss, load_meta_loss
from sklearn_mln.benchmark import (
    BenchmarkResult,
    Setting,
    comparison_table,
    score_settings,
    shared_tasks,
    summarize,
    task_rng,
)
from sklearn_mln.datasets import load_splits
from sklearn_mln.toolkit import architecture_factory, provenance, provenance_lines

ROOT = Path(__file__).resolve().parents[2]
LOSS = ROOT / "benchmarks/results/time_to_quality/tuned-start-progress.mln"
ROW = ROOT / "benchmarks/results/learned_losses_v2_cnn_k10/results.json"
OUTPUT = ROOT / "benchmarks/results/ablations/progress_frozen"
SEED, K, N_TASKS = 0, 10, 100


class NeverTold(nn.Module):
    """The loss without a ``progress`` attribute: nobody can tell it, it keeps its default."""

    def __init__(self, loss):
        super().__init__()
        self.loss = loss

    def per_sample(self, logits, y):
        return self.loss.per_sample(logits, y)


def main() -> None:
    started = time.perf_counter()
    torch.set_num_threads(1)
    record = provenance(seed=SEED, threads=1)
    pick = BenchmarkResult.load(ROW).rows[0].losses["tuned-start-progress"]
    lr, steps = float(pick.lr), int(pick.steps)
    X_pool, y_pool, X_test, y_test = load_splits(
        "fashion-mnist", pool_size=2000, test_size=2000, seed=SEED
    )
    _, y_test = np.unique(y_test, return_inverse=True)
    test = shared_tasks(X_test, y_test, K, N_TASKS, task_rng(SEED, 1, K))
    learned = load_meta_loss(LOSS)
    modules = {
        ("told its progress", ()): learned,
        ("progress frozen", ()): NeverTold(load_meta_loss(LOSS)),
        ("its start, label smoothing 0.9", ()): ClassicalLoss("label_smoothing", smoothing=0.9),
    }
    settings = [Setting(name, (), lr, steps) for name, _ in modules]
    default = Setting("its start, label smoothing 0.9", (), 0.3, 100)
    factory = architecture_factory("cnn", X_test.shape[1:], 10)
    scores = score_settings([*settings, default], modules, factory, test, X_test)
    accuracy = {s.loss: scores.accuracy[s] for s in settings}
    accuracy["MLNClassifier() default: label smoothing 0.9, lr 0.3, 100 steps"] = scores.accuracy[
        default
    ]
    same = np.array_equal(accuracy["told its progress"], pick.test_accuracy)
    baseline = "MLNClassifier() default: label smoothing 0.9, lr 0.3, 100 steps"
    rows = summarize(accuracy, baseline)
    record["wall_seconds"] = round(time.perf_counter() - started, 2)
    result = {
        "loss": str(LOSS.relative_to(ROOT)),
        "setting": {"lr": lr, "steps": steps},
        "reproduces_benchmark_row": bool(same),
        "rows": rows,
        "accuracy": {k: v.tolist() for k, v in accuracy.items()},
        "provenance": record,
    }
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        "# What the progress input adds (CNN, k = 10, the benchmark's 100 test tasks)",
        "",
        *provenance_lines(record),
        "",
        f"`{result['loss']}` at its benchmark pick (lr {lr:g}, {steps} steps); the same "
        f"accuracies as its benchmark row: {same}. Δ against `MLNClassifier()`'s default.",
        "",
        comparison_table(rows, baseline),
    ]
    OUTPUT.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
