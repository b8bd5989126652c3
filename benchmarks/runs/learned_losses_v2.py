"""Benchmark v2 rows for the losses evolved from the tuned classical optimum.

The losses are the final ones of ``benchmarks/time_to_quality.py`` (label smoothing 0.9 at
lr 0.3 as the start; per-class, per-class with the true-class input, joint). Same protocol,
seeds and subsamples as ``small_data_v2.py`` (so the 100 test tasks of a row are the same
tasks as there, task for task), with the classical losses that won those rows as
baselines: cross-entropy and label smoothing over (0.8, 0.9, 0.95), each with lr and steps
tuned. ``compare_learned_rows.py`` pairs these rows with the v2 rows.

    python benchmarks/runs/learned_losses_v2.py cnn        # one process per architecture
    python benchmarks/runs/learned_losses_v2.py mlp
"""

import sys

from small_data_v2 import CNN

from sklearn_mln.benchmark import run_benchmark

TIME_TO_QUALITY = "benchmarks/results/time_to_quality"
EVOLVED = ("tuned-start", "tuned-start-true-class", "tuned-start-progress", "tuned-start-joint")
LOSSES = [f"{name}={TIME_TO_QUALITY}/{name}.mln" for name in EVOLVED]
BASELINES = {"cross_entropy": {}, "label_smoothing": {"smoothing": (0.8, 0.9, 0.95)}}

if __name__ == "__main__":
    architectures = sys.argv[1:] or ["cnn"]
    cnn = "cnn" in architectures
    run_benchmark(
        "fashion-mnist",
        losses=LOSSES,
        baselines=BASELINES,
        architectures=architectures,
        ks=(10, 1, 5),
        n_tasks=100,
        n_tuning_tasks=20,
        n_screening_tasks=5,
        grid_steps=CNN["grid_steps"] if cnn else (50, 100, 200),
        n_finalists=CNN["n_finalists"] if cnn else 3,
        pool_size=2000,
        test_size=2000,
        output=f"benchmarks/results/learned_losses_v2_{'_'.join(architectures)}",
        threads=1,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
