"""
==============================
Tune the loss for your data
==============================

``MLNClassifier()`` trains with one fixed setting, chosen on Fashion-MNIST for the
default classifiers. With your own data and your own module,
:class:`~sklearn_mln.MLNClassifierCV` picks the loss, the learning rate and the number of
epochs by cross-validation on the small training set itself -- all (candidate, fold)
classifiers of a learning rate trained at once -- and refits the best.
"""

# %%
import os
import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import train_test_split

from sklearn_mln import MLP, MLNClassifier, MLNClassifierCV
from sklearn_mln.datasets import load_digits_images

FAST = os.environ.get("SKLEARN_MLN_EXAMPLES_FAST") == "1"  # smaller budgets in CI

X, y = load_digits_images(return_X_y=True)
X = X.reshape(len(X), -1)
X_pool, X_test, y_pool, y_test = train_test_split(X, y, test_size=0.5, stratify=y, random_state=0)

# %%
# A small training set and a module of your own
# ---------------------------------------------
# Ten digits of each class, and an MLP with two hidden layers (128, 64): not the
# classifier ``MLNClassifier()``'s defaults were chosen for.
rng = np.random.RandomState(0)
train = np.concatenate(
    [rng.choice(np.flatnonzero(y_pool == c), 10, replace=False) for c in range(10)]
)
X_small, y_small = X_pool[train], y_pool[train]
mine = {"module": MLP, "module__hidden_sizes": (128, 64)}

# %%
# The search
# ----------
# ``MLNClassifierCV()`` searches its default grid (48 candidates: four losses, three
# learning rates, four epoch counts each) on a stratified 5-fold; ``FAST`` (the docs'
# CI) searches a smaller one.
grid = None
if FAST:
    grid = {
        "meta_loss": ["cross_entropy", "label_smoothing(smoothing=0.9)"],
        "lr": [0.03, 0.3],
        "max_epochs": [50, 100],
    }
tick = time.perf_counter()
search = MLNClassifierCV(param_grid=grid, random_state=0, **mine).fit(X_small, y_small)
print(f"searched {len(search.cv_results_['params'])} candidates x {search.n_splits_} folds "
      f"in {time.perf_counter() - tick:.1f} s")  # fmt: skip
print("best:", search.best_params_, f"cross-validated accuracy {search.best_score_:.3f}")

fixed = MLNClassifier(random_state=0, **mine).fit(X_small, y_small)
print(f"test accuracy: MLNClassifier() {fixed.score(X_test, y_test):.3f}, "
      f"MLNClassifierCV() {search.score(X_test, y_test):.3f}")  # fmt: skip

# %%
# What the search saw
# -------------------
# The mean cross-validated accuracy of every candidate, per loss, against the epochs, at
# the best learning rate of each loss. ``cv_results_`` is ``GridSearchCV``'s, so the same
# table could be read from a ``GridSearchCV(MLNClassifier(), ...)`` -- with the same
# numbers, trained one classifier at a time.
results = search.cv_results_
losses = list(dict.fromkeys(p["meta_loss"] for p in results["params"]))
fig, ax = plt.subplots(figsize=(6, 4))
for loss in losses:
    rows = [i for i, p in enumerate(results["params"]) if p["meta_loss"] == loss]
    best = max(rows, key=lambda i: results["mean_test_score"][i])
    lr = results["params"][best]["lr"]
    rows = [i for i in rows if results["params"][i]["lr"] == lr]
    epochs = [results["params"][i]["max_epochs"] for i in rows]
    ax.plot(epochs, results["mean_test_score"][rows], marker="o", label=f"{loss}, lr {lr}")
ax.set_xlabel("epochs")
ax.set_ylabel("cross-validated accuracy")
ax.set_title("MLNClassifierCV on 10 digits a class, MLP (128, 64)")
ax.legend(fontsize=7)
fig.tight_layout()
plt.show()
