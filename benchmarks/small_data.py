"""Does a learned loss beat classical losses tuned on their own terms, on small-data tasks?

Meta-train is the training split only, meta-test fresh tasks from the test split: ``k``
images per class to train on, accuracy on the rest of the test split. Every classical loss
is tuned over its own hyperparameters (label smoothing over ε, Poly-1 over ε, focal over γ)
and over the SGD learning rate and steps; learned losses over lr and steps, with the same
budget. The lr grid grows while a pick lies on its edge. The baseline of each row is the
classical loss with the best *tuning* score. See :mod:`sklearn_mln.benchmark`.

Output (``--output``, default ``benchmarks/results/small_data/``, written atomically):
``results.json`` (settings, tuning grids, per-task test accuracies, summaries, provenance),
``results.md`` and ``accuracy_vs_k.png``. Progress goes to stderr.

    python benchmarks/small_data.py --loss evolved=mln-fashion-mnist.mln   # full run: hours
    python benchmarks/small_data.py --ks 1 5 --tasks 3 --tuning-tasks 2 --grid-lr 0.03 0.1 \\
        --grid-steps 10 --architectures mlp --test-size 300 --pool-size 600   # smoke run
    python benchmarks/small_data.py --dataset cifar10 --data-home ~/data/cifar-10-batches-py

The same command is ``python -m sklearn_mln benchmark ...``; the committed runs are the
scripts of ``benchmarks/runs/``.
"""

from __future__ import annotations

import sys

from sklearn_mln.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["benchmark", *sys.argv[1:]]))
