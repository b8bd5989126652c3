"""Does gradient refinement find what CMA-ES cannot? (MLNEvolver's ``refine_steps``)

On one problem, three losses from the same evolution: CMA-ES's choice, that loss refined by
``--refine-steps`` Adam steps on the validation cross-entropy differentiated through the
unrolled inner loop, and the start refined the same way without CMA-ES (``--generations``
of CMA-ES are then skipped: one generation, the minimum, at popsize 2; the refined loss is
kept only where it wins the re-evaluation, as in ``MLNEvolver``). Each is then trained
on the same ``--test-tasks`` paired tasks from Fashion-MNIST's *test* split (never seen by
evolution or refinement) and compared with the start, paired, with a Wilcoxon test.

    python benchmarks/experiments/gradient_refinement.py --output \\
        benchmarks/results/gradient_refinement/mlp-k10.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from sklearn_mln import MetaLossNetwork, MLNEvolver
from sklearn_mln.benchmark import paired_accuracies, summarize
from sklearn_mln.datasets import load_fashion_mnist
from sklearn_mln.toolkit import (
    MetaLossSpec,
    architecture_factory,
    provenance,
    provenance_lines,
    start_point,
)


def _pool(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    X, y = load_fashion_mnist("train", return_X_y=True)
    rows = np.random.RandomState(seed).permutation(len(y))[:size]
    return X[rows].reshape(size, -1), y[rows].astype(np.int64)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True, help="results file (.json; .md beside it)")
    parser.add_argument("--shots", type=int, default=10)
    parser.add_argument("--init", default="label_smoothing(smoothing=0.9)")
    parser.add_argument("--lr", type=float, default=0.03)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--tasks", type=int, default=4, help="tasks per generation / step")
    parser.add_argument("--popsize", type=int, default=12)
    parser.add_argument("--generations", type=int, default=20)
    parser.add_argument("--refine-steps", type=int, default=20)
    parser.add_argument("--refine-lr", type=float, default=0.003)
    parser.add_argument("--pool-size", type=int, default=2000)
    parser.add_argument("--test-tasks", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.perf_counter()
    X, y = _pool(args.pool_size, args.seed)
    common = dict(
        n_shots=args.shots, n_tasks=args.tasks, init=args.init, inner_lr=args.lr,
        inner_steps=args.steps, shots_input=True, n_reeval_tasks=16, random_state=args.seed,
    )  # fmt: skip
    runs = {
        "cma-es": dict(popsize=args.popsize, n_generations=args.generations),
        "cma-es + refinement": dict(
            popsize=args.popsize,
            n_generations=args.generations,
            refine_steps=args.refine_steps,
            refine_lr=args.refine_lr,
        ),  # fmt: skip
        "refinement only": dict(
            popsize=2, n_generations=1, refine_steps=args.refine_steps, refine_lr=args.refine_lr
        ),
    }
    losses, records = {}, {}
    spec, x0 = start_point(
        args.init, MetaLossSpec(n_classes=10, shots_input=True), np.random.RandomState(0)
    )
    losses["start"] = MetaLossNetwork.from_spec(spec, x0)
    for name, settings in runs.items():
        tick = time.perf_counter()
        evolver = MLNEvolver(**common, **settings).fit(X, y)
        losses[name] = evolver.meta_loss_
        records[name] = {
            "settings": settings,
            "seconds": time.perf_counter() - tick,
            "reevaluation": evolver.reevaluation_,
            "refinement": evolver.refinement_,
        }
        print(f"{name}: chosen {evolver.reevaluation_['chosen']} "
              f"({time.perf_counter() - tick:.0f} s)", file=sys.stderr, flush=True)  # fmt: skip
    X_test, y_test = load_fashion_mnist("test", return_X_y=True)
    X_test = X_test.reshape(len(X_test), -1)[:2000]
    accuracies = paired_accuracies(
        losses, X_test, y_test[:2000].astype(np.int64),
        module_factory=architecture_factory("mlp", X_test.shape[1:], 10),
        lr=args.lr, steps=args.steps, n_shots=args.shots, n_tasks=args.test_tasks,
        random_state=args.seed + 1, progress=True,
    )  # fmt: skip
    summary = summarize(accuracies, "start")
    result = {
        "question": "does gradient refinement find what CMA-ES cannot?",
        "settings": vars(args),
        "runs": records,
        "test": summary,
        **provenance(seed=args.seed, started=started, threads=1),
    }
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=float) + "\n")
    lines = [
        "| loss | chosen by the re-evaluation | test accuracy | Δ vs start (pt, 95 % CI) | p |",
        "|---|---|---|---|---|",
    ]
    for s in summary:
        start = s["loss"] == "start"
        delta = "–" if start else f"{100 * s['delta']:+.2f} ± {100 * s['ci95']:.2f}"
        p = "–" if start else f"{s['p_wilcoxon']:.2g}"
        chosen = records.get(s["loss"], {}).get("reevaluation", {}).get("chosen", "–")
        lines.append(f"| {s['loss']} | {chosen} | {s['mean']:.4f} | {delta} | {p} |")
    table = "\n".join(lines)
    header = ["# Gradient refinement", "", *provenance_lines(result), ""]
    out.with_suffix(".md").write_text("\n".join(header) + f"\n{table}\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
