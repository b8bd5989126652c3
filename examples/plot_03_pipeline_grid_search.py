"""
========================================
In a Pipeline, tuned with GridSearchCV
========================================

:class:`~sklearn_mln.MLNClassifier` is an ordinary scikit-learn classifier, and its loss
is an ordinary hyper-parameter: cross-validation can choose between an evolved loss and
the classical ones, together with the learning rate.
"""

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_mln import MLNClassifier, MLNEvolver
from sklearn_mln.datasets import load_digits_images

FAST = os.environ.get("SKLEARN_MLN_EXAMPLES_FAST") == "1"  # smaller budgets in CI

X, y = load_digits_images(return_X_y=True)
X = X.reshape(len(X), -1)
X_pool, X_held, y_pool, y_held = train_test_split(X, y, test_size=0.5, stratify=y, random_state=0)

# %%
# A loss to choose from
# ---------------------
# A quickly evolved one (see :ref:`sphx_glr_auto_examples_plot_02_evolution.py`).
evolver = MLNEvolver(
    n_shots=10,
    n_tasks=4,
    popsize=8,
    n_generations=3 if FAST else 8,
    inner_steps=50,
    inner_lr=0.1,
    n_reeval_tasks=8,
    n_jobs=2,
    random_state=0,
).fit(X_pool, y_pool)

# %%
# The small training set: 15 images per class from the held-out half; the rest is the
# test set.
rng = np.random.RandomState(0)
train = np.concatenate(
    [rng.choice(np.flatnonzero(y_held == c), 15, replace=False) for c in range(10)]
)
test = np.setdiff1d(np.arange(len(y_held)), train)
X_train, y_train, X_test, y_test = X_held[train], y_held[train], X_held[test], y_held[test]

# %%
# Pipeline and grid
# -----------------
# Put the evolved *network* (``evolver.meta_loss_``) or a file path in the grid, not the
# evolver: ``GridSearchCV`` clones every parameter that is an estimator, and a clone of
# the evolver is unfitted.
pipe = make_pipeline(StandardScaler(), MLNClassifier(max_epochs=50, random_state=0))
param_grid = {
    "mlnclassifier__meta_loss": ["cross_entropy", "label_smoothing", evolver.meta_loss_],
    "mlnclassifier__lr": [0.1] if FAST else [0.03, 0.1],
}
search = GridSearchCV(
    pipe, param_grid, cv=StratifiedKFold(3, shuffle=True, random_state=0), n_jobs=1
)
search.fit(X_train, y_train)
print("best:", search.best_params_)
print(f"cross-validated accuracy {search.best_score_:.4f}")
print(f"test accuracy of the refitted pipeline {search.score(X_test, y_test):.4f}")


# %%
# Cross-validated accuracy of each combination
# --------------------------------------------
# Three folds of 150 images are a noisy yardstick: differences of a point or two between
# good losses are within the fold-to-fold spread (the error bars).
def loss_name(loss):
    return loss if isinstance(loss, str) else "evolved"


results = search.cv_results_
labels = [
    f"{loss_name(p['mlnclassifier__meta_loss'])}\nlr={p['mlnclassifier__lr']}"
    for p in results["params"]
]
fig, ax = plt.subplots(figsize=(7, 3.5), layout="constrained")
ax.bar(
    range(len(labels)),
    results["mean_test_score"],
    yerr=results["std_test_score"],
    color=["C3" if "evolved" in label else "C0" for label in labels],
    capsize=3,
)
ax.set_xticks(range(len(labels)), labels, fontsize=8)
ax.set_ylim(min(results["mean_test_score"]) - 0.1, 1.0)
ax.set_ylabel("3-fold CV accuracy")
ax.set_title("GridSearchCV over the loss and the learning rate")
plt.show()
