"""A cheap screen before a benchmark row: is an evolved loss at least as good as its start?

Every loss trains the same ``--tasks`` paired Fashion-MNIST tasks per row (MLP k = 1 and 10,
CNN k = 10 by default), drawn from the *training* split with a seed of their own (the
benchmark's test split stays unseen), at the step size and steps the loss was evolved with
(read from the file's metadata, else ``--mlp-lr`` / ``--cnn-lr``). Reported: each loss's
paired difference to ``--start`` with its 95 % CI and Wilcoxon p. A loss goes on to the
100-task benchmark rows only if no row is significantly worse than the start.

    python benchmarks/experiments/screen_loss.py told=benchmarks/results/mixture/fmnist-told.mln \\
        --output benchmarks/results/mixture/screen-fmnist-told.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from sklearn_mln import ClassicalLoss, load_meta_loss
from sklearn_mln.benchmark import paired_accuracies, summarize
from sklearn_mln.datasets import load_fashion_mnist
from sklearn_mln.toolkit import architecture_factory, provenance, provenance_lines

ROWS = (("mlp", 1), ("mlp", 10), ("cnn", 10))


def _training(path_losses: dict, architecture: str, k: int, args) -> tuple[float, int]:
    """The (lr, steps) the first evolved loss was trained with on ``architecture`` at ``k``
    (a run may record one step size per k)."""
    for loss in path_losses.values():
        recorded = loss.metadata.get("training", {}).get(architecture)
        if recorded:
            lr = recorded["lr"]
            return float(lr[str(k)] if isinstance(lr, dict) else lr), int(recorded["steps"])
    return (args.cnn_lr, 100) if architecture == "cnn" else (args.mlp_lr, 200)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("losses", nargs="+", help="NAME=PATH of each evolved loss")
    parser.add_argument("--start-smoothing", type=float, default=0.9,
                        help="the start: label smoothing with this epsilon")  # fmt: skip
    parser.add_argument("--start-loss", help="the start as a .mln file (instead of smoothing)")
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--pool-size", type=int, default=3000)
    parser.add_argument("--mlp-lr", type=float, default=0.03)
    parser.add_argument("--cnn-lr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.perf_counter()
    evolved = {}
    for item in args.losses:
        name, _, path = item.rpartition("=")
        evolved[name or Path(path).stem] = load_meta_loss(path)
    X, y = load_fashion_mnist("train", return_X_y=True)
    rows = np.random.RandomState(args.seed).permutation(len(y))[: args.pool_size]
    X, y = X[rows], y[rows].astype(np.int64)
    start = (
        load_meta_loss(args.start_loss)
        if args.start_loss
        else ClassicalLoss("label_smoothing", smoothing=args.start_smoothing)
    )
    results = []
    for architecture, k in ROWS:
        lr, steps = _training(evolved, architecture, k, args)
        X_arch = X.reshape(len(X), -1) if architecture == "mlp" else X
        losses = {"start": start, **evolved}
        factory = architecture_factory(architecture, X_arch.shape[1:], 10)
        accuracies = paired_accuracies(
            losses, X_arch, y, module_factory=factory, lr=lr, steps=steps, n_shots=k,
            n_tasks=args.tasks, random_state=args.seed + k,
        )  # fmt: skip
        for s in summarize(accuracies, "start"):
            results.append({"architecture": architecture, "k": k, "lr": lr, "steps": steps, **s})
        print(f"{architecture} k={k} done", file=sys.stderr, flush=True)
    meta = provenance(seed=args.seed, started=started, threads=1)
    record = {"settings": vars(args), "rows": results, **meta}
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1, default=float) + "\n")
    lines = ["# Screen: evolved losses against their start", "", *provenance_lines(record), ""]
    lines += [f"{args.tasks} paired tasks per row from Fashion-MNIST's training split.", ""]
    lines += ["| row | lr, steps | loss | accuracy | Δ vs start (pt, 95 % CI) | p |"]
    lines += ["|---|---|---|---|---|---|"]
    for r in results:
        delta = "–" if r["loss"] == "start" else f"{100 * r['delta']:+.2f} ± {100 * r['ci95']:.2f}"
        p = "–" if r["loss"] == "start" else f"{r['p_wilcoxon']:.2g}"
        lines.append(
            f"| {r['architecture']} k={r['k']} | {r['lr']:g}, {r['steps']} | {r['loss']} | "
            f"{r['mean']:.4f} | {delta} | {p} |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
