"""Benchmark v2 on Fashion-MNIST: the default CNN and MLP (and mlp2) at k = 1 .. 50.

Every classical loss tuned over its own hyperparameters, lr and steps on 20 train-split
tasks (every setting screened on 5, each loss's 3 best (hyperparameters, lr) on all 20);
100 paired test-split tasks per row. Learned losses: the shipped per-class loss and the
joint loss of evolution config B, each with its linear and network parts
(``benchmarks/experiments/loss_parts.py``). Writes
``benchmarks/results/small_data_v2_<architectures>/``.

    python benchmarks/small_data_v2.py cnn &   # one process per architecture
    python benchmarks/small_data_v2.py mlp mlp2
    python benchmarks/small_data_v2.py mlp --ks 20 50   # some rows: their own folder
    python benchmarks/small_data_v2.py cnn --ks 50 --device cuda   # on a GPU: *_cuda/
"""

import argparse
import sys

from sklearn_mln.benchmark import run_benchmark

ABLATIONS = "benchmarks/results/ablations"
LOSSES = [
    "fashion-mnist",
    f"fashion-mnist-linear={ABLATIONS}/fashion-mnist-linear.mln",
    f"fashion-mnist-network={ABLATIONS}/fashion-mnist-network.mln",
    "joint-B=benchmarks/results/evolution/fmnist-cnn-ls-joint-B.mln",
    f"joint-B-linear={ABLATIONS}/joint-B-linear.mln",
    f"joint-B-network={ABLATIONS}/joint-B-network.mln",
]

#: the CNN costs about 12x the MLP per classifier on 28x28 images: its run tunes smaller
#: grids (the values around each loss's optimum seen in the MLP run and in earlier
#: measurements), 50 and 100 steps, and leaves out the network-only ablations
CNN = dict(
    baselines={
        "cross_entropy": {},
        "mse": {},
        "label_smoothing": {"smoothing": (0.1, 0.5, 0.8, 0.9, 0.95)},
        "poly1": {"epsilon": (1.0, 3.0)},
        "focal": {"gamma": (1.0, 3.0)},
    },
    losses=[loss for loss in LOSSES if not loss.split("=")[0].endswith("-network")],
    grid_steps=(50, 100),
    n_finalists=2,
    ks=(10, 1, 5, 20),
)

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("architectures", nargs="*", default=["cnn", "mlp"])
    parser.add_argument("--ks", nargs="+", type=int, help="only these k (default: all)")
    parser.add_argument("--device", default="cpu", help="torch device of the inner loop")
    args = parser.parse_args()
    architectures = args.architectures
    options = {"losses": LOSSES, "ks": (10, 1, 5, 20, 50), "n_finalists": 3}
    options.update(CNN if any(a.startswith("cnn") for a in architectures) else {})
    options.update({"ks": tuple(args.ks)} if args.ks else {})
    suffix = "_k" + "_".join(map(str, args.ks)) if args.ks else ""
    # a run on another device has its own folder: it never overwrites the CPU rows
    suffix += "" if args.device == "cpu" else "_" + args.device.replace(":", "")
    run_benchmark(
        "fashion-mnist",
        **options,
        architectures=architectures,
        n_tasks=100,
        n_tuning_tasks=20,
        n_screening_tasks=5,
        # the validation images dominate a tuning run's cost; 2000 keeps the run in hours
        pool_size=2000,
        test_size=2000,
        output=f"benchmarks/results/small_data_v2_{'_'.join(architectures)}{suffix}",
        # one thread per process: on a loaded machine torch's intra-op threads wait on each
        # other (a CNN predicted 3000 images 60x slower with 2 threads than with 1)
        threads=1,
        device=args.device,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
