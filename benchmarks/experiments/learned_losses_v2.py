"""Benchmark v2 rows for the losses evolved from the tuned classical optimum.

The losses are the final ones of ``benchmarks/time_to_quality.py`` (label smoothing 0.9 at
lr 0.3 as the start; per-class, per-class with the true-class input, joint). Same protocol,
seeds and subsamples as ``small_data_v2.py`` (so the 100 test tasks of a row are the same
tasks as there, task for task). The comparison is with the v2 rows' best tuned classical
losses (``compare_learned_rows.py`` pairs them task for task); this run's own baselines,
cross-entropy and label smoothing 0.95 with lr and steps tuned, only check that the tasks
are the same (a setting picked in both runs must score the same on every task).

    python benchmarks/experiments/learned_losses_v2.py cnn 10     # architecture, then the ks
    python benchmarks/experiments/learned_losses_v2.py cnn 10 \\
        --losses tuned-start tuned-start-progress
    python benchmarks/experiments/learned_losses_v2.py mlp 1 5 10 --losses joint-B=PATH \\
        --output benchmarks/results/learned_losses_v2_joint-B_mlp   # any loss file by path
"""

import argparse
import sys

from sklearn_mln.benchmark import run_benchmark

TIME_TO_QUALITY = "benchmarks/results/time_to_quality"
EVOLVED = (
    "tuned-start",
    "tuned-start-true-class",
    "tuned-start-progress",
    "tuned-start-joint",
    "tuned-start-joint-long",
)
BASELINES = {"cross_entropy": {}, "label_smoothing": {"smoothing": (0.95,)}}
#: the v2 rows' tuning budget per classifier kind (``benchmarks/small_data_v2.py``: the CNN
#: costs about 12x the MLP, so its run tunes 50 and 100 steps and 2 finalists)
STEPS_AND_FINALISTS = {"cnn": ((50, 100), 2), "mlp": ((50, 100, 200), 3)}

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("architecture", choices=("cnn", "mlp", "mlp2", "cnn-wide"))
    parser.add_argument("ks", type=int, nargs="*", default=[10, 1, 5])
    parser.add_argument(
        "--losses",
        nargs="+",
        default=list(EVOLVED),
        help=f"names of {TIME_TO_QUALITY} losses ({', '.join(EVOLVED)}) or NAME=PATH",
    )
    parser.add_argument("--output", help="results folder (default: from architecture and ks)")
    args = parser.parse_args()
    for name in args.losses:
        if "=" not in name and name not in EVOLVED:
            parser.error(f"--losses: {name!r} is neither one of {EVOLVED} nor NAME=PATH")
    cnn = args.architecture.startswith("cnn")
    run_benchmark(
        "fashion-mnist",
        losses=[
            name if "=" in name else f"{name}={TIME_TO_QUALITY}/{name}.mln" for name in args.losses
        ],
        baselines=BASELINES,
        architectures=[args.architecture],
        ks=tuple(args.ks),
        n_tasks=100,
        n_tuning_tasks=20,
        n_screening_tasks=5,
        grid_steps=STEPS_AND_FINALISTS["cnn" if cnn else "mlp"][0],
        n_finalists=STEPS_AND_FINALISTS["cnn" if cnn else "mlp"][1],
        pool_size=2000,
        test_size=2000,
        output=args.output
        or (
            f"benchmarks/results/learned_losses_v2_{args.architecture}"
            f"_k{'_'.join(map(str, args.ks))}"
        ),
        threads=1,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
