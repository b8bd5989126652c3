"""
===============================
Small-data learning curves
===============================

How does a loss evolved for 10 images per class do with fewer or more? Accuracy against
the number of training images per class, for the evolved loss and the classical ones.
Every loss trains on the same training sets from the same initial weights (a paired
design), so the curves are comparable point by point.
"""

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import train_test_split

from sklearn_mln import MetaLossNetwork, MLNClassifier
from sklearn_mln.datasets import load_digits_images

FAST = os.environ.get("SKLEARN_MLN_EXAMPLES_FAST") == "1"  # smaller budgets in CI

X, y = load_digits_images(return_X_y=True)
X = X.reshape(len(X), -1)
# the same split as ``python -m sklearn_mln evolve``: evolution saw only the pool half
X_pool, X_held, y_pool, y_held = train_test_split(X, y, test_size=0.5, stratify=y, random_state=0)

# %%
# The losses
# ----------
# The evolved loss is the one ``python -m sklearn_mln evolve`` produced (digits, 10 shots,
# seed 0; :ref:`results`), written out as its 35 weights. To use your own, replace it with
# ``load_meta_loss("mln-digits.mln")`` or a fitted evolver.
# fmt: off
EVOLVED_DIGITS_10_SHOT = [
    -0.027951077, 0.14303773, 0.10732624, 0.038370535, 0.21968315, 0.7382881, -1.0943651,
    -0.67142234, -0.092265368, -0.16088974, 1.096257, 0.15126265, -1.6631573, -0.40170516,
    -0.19679821, 0.69154396, -0.83739202, 1.1845365, -0.087817934, 0.067610703, 0.011574414,
    0.094387612, -0.095109092, 0.025376885, 0.028161016, 0.098518615, 0.15906957, 0.07638823,
    -0.026395512, -0.005768253, -0.025453758, 0.028326971, 0.1266055, -0.032483483,
    0.050574007,
]
# fmt: on
losses = {
    "cross_entropy": "cross_entropy",
    "mse": "mse",
    "label_smoothing": "label_smoothing",
    "evolved": MetaLossNetwork(n_classes=10).set_flat_params(EVOLVED_DIGITS_10_SHOT),
}

# %%
# Train on growing training sets
# ------------------------------
# For each number of images per class, a few training sets are drawn from the held-out
# half; each classifier is tested on the rest of it. The training is the one the loss was
# evolved with: 100 full-batch SGD steps, learning rate 0.1, momentum 0.9.
shots = [2, 5, 10, 20] if not FAST else [2, 10]
n_repeats = 2 if FAST else 4
accuracy = {name: np.zeros((len(shots), n_repeats)) for name in losses}
rng = np.random.RandomState(0)
for i, n_shots in enumerate(shots):
    for r in range(n_repeats):
        train = np.concatenate(
            [rng.choice(np.flatnonzero(y_held == c), n_shots, replace=False) for c in range(10)]
        )
        test = np.setdiff1d(np.arange(len(y_held)), train)
        for name, loss in losses.items():
            clf = MLNClassifier(meta_loss=loss, max_epochs=100, lr=0.1, random_state=r)
            clf.fit(X_held[train], y_held[train])
            accuracy[name][i, r] = clf.score(X_held[test], y_held[test])

for name, acc in accuracy.items():
    print(f"{name:>16}: " + "  ".join(f"{m:.3f}" for m in acc.mean(axis=1)))

# %%
# Accuracy, and the paired difference to cross-entropy
# ----------------------------------------------------
# The right panel subtracts cross-entropy's accuracy *on the same training set* before
# averaging, which removes most of the set-to-set variation. With a handful of repeats the
# error bars (standard error) are wide; the command line's table uses 50 paired tasks.
fig, (ax, ax_diff) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
colors = {"cross_entropy": "C0", "mse": "C1", "label_smoothing": "C2", "evolved": "C3"}
for name, acc in accuracy.items():
    ax.plot(shots, acc.mean(axis=1), marker="o", color=colors[name], label=name)
    if name != "cross_entropy":
        diff = acc - accuracy["cross_entropy"]
        ax_diff.errorbar(
            shots,
            diff.mean(axis=1),
            yerr=diff.std(axis=1, ddof=1) / np.sqrt(n_repeats),
            marker="o",
            capsize=3,
            color=colors[name],
            label=name,
        )
ax.set_xscale("log")
ax.minorticks_off()
ax.set_xticks(shots, [str(s) for s in shots])
ax.set_xlabel("training images per class")
ax.set_ylabel("test accuracy")
ax.legend()
ax_diff.axhline(0, color="0.5", linewidth=0.8)
ax_diff.axvline(10, color="C3", linestyle=":", linewidth=1)
ax_diff.set_xscale("log")
ax_diff.minorticks_off()
ax_diff.set_xticks(shots, [str(s) for s in shots])
ax_diff.set_xlabel("training images per class (dotted: evolved for 10)")
ax_diff.set_ylabel("accuracy minus cross-entropy's")
ax_diff.legend()
plt.show()
