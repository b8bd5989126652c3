"""
===========
Quick start
===========

Evolve a loss on one half of the digits, then train a small classifier with it on a
*small* training set -- 10 images per class -- drawn from the other half, and compare it
with cross-entropy on the same training sets.
"""

# %%
# Data: a pool for evolution, and held-out data it never sees
# -----------------------------------------------------------
# The 8x8 digits are flattened to 64 features, so the classifier is the default
# :class:`~sklearn_mln.MLP`.
import os

import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import train_test_split

from sklearn_mln import MLNClassifier, MLNEvolver
from sklearn_mln.datasets import load_digits_images

FAST = os.environ.get("SKLEARN_MLN_EXAMPLES_FAST") == "1"  # smaller budgets in CI

X, y = load_digits_images(return_X_y=True)
X = X.reshape(len(X), -1)
X_pool, X_held, y_pool, y_held = train_test_split(X, y, test_size=0.5, stratify=y, random_state=0)
print(f"pool: {X_pool.shape}, held-out: {X_held.shape}")

# %%
# Evolve a meta-loss
# ------------------
# Every generation, each of ``popsize`` candidate losses trains a fresh MLP on each of
# ``n_tasks`` 10-shot tasks (``inner_steps`` of full-batch SGD) and is scored by the
# validation accuracy of those classifiers. The budget here is tiny; ``python -m
# sklearn_mln evolve`` spends about 50 times more.
STEPS, LR = 50, 0.1  # the inner training, used again below
evolver = MLNEvolver(
    n_shots=10,
    n_tasks=4,
    popsize=8,
    n_generations=3 if FAST else 10,
    inner_steps=STEPS,
    inner_lr=LR,
    n_reeval_tasks=8,
    n_jobs=2,
    random_state=0,
).fit(X_pool, y_pool)
print(f"chosen: {evolver.reevaluation_['chosen']}, fitness {evolver.best_fitness_:.3f}")
evolver.meta_loss_

# %%
# Train with it on small data
# ---------------------------
# :class:`~sklearn_mln.MLNClassifier` trains with the evolved loss exactly as the inner
# loop did (same steps, learning rate and momentum). Each repetition draws a new
# 10-per-class training set from the held-out half and tests on the rest of it; both
# losses train on the same sets from the same initial weights (``random_state``).
rng = np.random.RandomState(0)
losses = {"cross_entropy": "cross_entropy", "evolved": evolver.meta_loss_}
scores = {name: [] for name in losses}
for repetition in range(3 if FAST else 8):
    train = np.concatenate(
        [rng.choice(np.flatnonzero(y_held == c), 10, replace=False) for c in range(10)]
    )
    test = np.setdiff1d(np.arange(len(y_held)), train)
    for name, loss in losses.items():
        clf = MLNClassifier(meta_loss=loss, max_epochs=STEPS, lr=LR, random_state=repetition)
        clf.fit(X_held[train], y_held[train])
        scores[name].append(clf.score(X_held[test], y_held[test]))

for name, values in scores.items():
    print(f"{name:>14}: {np.mean(values):.4f} ± {np.std(values):.4f}")

# %%
# Paired results
# --------------
# Each line is one training set. A loss evolved for seconds, on a few tasks, is a noisy
# pick, and a handful of training sets is a noisy yardstick: expect small differences
# either way. The :ref:`results` page shows the full-budget run, where the evolved loss wins
# on 30 of 50 held-out tasks.
fig, ax = plt.subplots(figsize=(4.5, 4), layout="constrained")
for ce, evolved in zip(scores["cross_entropy"], scores["evolved"]):
    ax.plot([0, 1], [ce, evolved], color="0.6", marker="o")
ax.set_xticks([0, 1], ["cross-entropy", "evolved"])
ax.set_xlim(-0.4, 1.4)
ax.set_ylabel("held-out accuracy (10 images per class)")
ax.set_title("same training sets, same initial weights")
plt.show()
