"""Benchmark v2 rows for the losses evolved from the tuned classical optimum.

The losses are the final ones of ``benchmarks/time_to_quality.py`` (label smoothing 0.9 at
lr 0.3 as the start; per-class, per-class with the true-class input, joint). Same protocol,
seeds and subsamples as ``small_data_v2.py`` (so the 100 test tasks of a row are the same
tasks as there, task for task). The comparison is with the v2 rows' best tuned classical
losses (``compare_learned_rows.py`` pairs them task for task); this run's own baselines,
cross-entropy and label smoothing 0.95 with lr and steps tuned, only check that the tasks
are the same (a setting picked in both runs must score the same on every task).

    python benchmarks/runs/learned_losses_v2.py cnn 10     # architecture, then the ks
    python benchmarks/runs/learned_losses_v2.py cnn 5 1
"""

import sys
from pathlib import Path

from small_data_v2 import CNN

from sklearn_mln.benchmark import run_benchmark

TIME_TO_QUALITY = "benchmarks/results/time_to_quality"
EVOLVED = ("tuned-start", "tuned-start-true-class", "tuned-start-progress", "tuned-start-joint")
BASELINES = {"cross_entropy": {}, "label_smoothing": {"smoothing": (0.95,)}}

if __name__ == "__main__":
    architecture, *ks = sys.argv[1:] or ["cnn", "10", "1", "5"]
    ks = tuple(int(k) for k in ks) or (10, 1, 5)
    architectures = [architecture]
    cnn = architecture == "cnn"
    present = [name for name in EVOLVED if Path(f"{TIME_TO_QUALITY}/{name}.mln").is_file()]
    missing = sorted(set(EVOLVED) - set(present))
    if missing:  # the report's loss_files say which were compared
        print(f"Not evolved yet, left out: {', '.join(missing)}", file=sys.stderr)
    run_benchmark(
        "fashion-mnist",
        losses=[f"{name}={TIME_TO_QUALITY}/{name}.mln" for name in present],
        baselines=BASELINES,
        architectures=architectures,
        ks=ks,
        n_tasks=100,
        n_tuning_tasks=20,
        n_screening_tasks=5,
        grid_steps=CNN["grid_steps"] if cnn else (50, 100, 200),
        n_finalists=CNN["n_finalists"] if cnn else 3,
        pool_size=2000,
        test_size=2000,
        output=f"benchmarks/results/learned_losses_v2_{architecture}_k{'_'.join(map(str, ks))}",
        threads=1,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
