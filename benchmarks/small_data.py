"""Does an evolved loss beat *tuned* classical losses on small-data tasks? (issue 5)

Meta-train is the training split only, meta-test fresh tasks from the test split: ``k``
images per class to train on, accuracy on the rest of the test split. For every k the
tasks and the classifiers' initial weights are shared by all losses and architectures
(paired design). Each (loss, architecture, k) — evolved losses included — gets its own SGD
learning rate and number of steps (momentum 0.9, full batch), tuned on tasks drawn from the
training split and scored on other training-split images, then frozen for the test tasks.

Losses: cross_entropy, mse (softmax vs one-hot), label_smoothing (0.1), focal (gamma 2),
plus every ``--loss NAME=PATH`` (a .mln file or a pretrained name).

Architectures: ``cnn`` (SmallCNN, channels (8, 16), the default evolution trains on),
``mlp`` (784-64-10) and ``cnn-wide`` (SmallCNN, channels (16, 32)), an architecture the
evolved loss never saw (transfer); ``mlp2`` (hidden (128, 64)) is available as well.

The baseline of each table is the classical loss with the best *tuning* (meta-train) score.
Picking the one with the best mean *test* accuracy would use the test data to choose, and
the maximum of several noisy means is biased upwards (winner's curse). Reported per
(architecture, k):
mean ± sd test accuracy, paired difference to the baseline with a 95 % CI, wins / ties /
losses and a Wilcoxon signed-rank p-value; failed trainings keep their real accuracy.

Output (``--output``, default ``benchmarks/results/small_data/``, written atomically):
``results.json`` (settings, tuning grids, per-task test accuracies, summaries),
``results.md`` and ``accuracy_vs_k.png``. Progress goes to stderr.

    python benchmarks/small_data.py --loss evolved=mln-fashion-mnist.mln   # full run: hours
    python benchmarks/small_data.py --ks 1 5 --tasks 3 --tuning-tasks 2 --grid-lr 0.03 0.1 \\
        --grid-steps 10 --architectures mlp --test-size 300 --pool-size 600   # smoke run
    python benchmarks/small_data.py --dataset cifar10 --data-home ~/data/cifar-10-batches-py

The same command is ``python -m sklearn_mln benchmark ...``.
"""

from __future__ import annotations

import sys

from sklearn_mln.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["benchmark", *sys.argv[1:]]))
