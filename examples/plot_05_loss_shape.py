"""
===================================
What does a learned loss look like?
===================================

:func:`~sklearn_mln.plotting.plot_loss_shape` draws a loss as a function of the predicted
probability ``p`` of the true class (the other classes share ``1 - p`` equally), and its
derivative ``d loss / d p`` -- how hard training pushes a sample that is already predicted
with confidence ``p`` -- beside cross-entropy, MSE, label smoothing and the focal loss.
"""

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

from sklearn_mln import MetaLossNetwork, MLNEvolver
from sklearn_mln.datasets import load_digits_images
from sklearn_mln.plotting import loss_curve, plot_loss_shape

FAST = os.environ.get("SKLEARN_MLN_EXAMPLES_FAST") == "1"  # smaller budgets in CI

# %%
# The loss evolved by the command line
# ------------------------------------
# These are the 35 weights of the loss evolved by ``python -m sklearn_mln evolve`` (digits,
# 10 shots per class, 60 generations, seed 0; see :ref:`results`), written out so that the
# example needs no file.
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
evolved = MetaLossNetwork(n_classes=10).set_flat_params(EVOLVED_DIGITS_10_SHOT)
axes = plot_loss_shape(evolved, label="evolved (digits, 10-shot)")
axes[0].figure.suptitle("A meta-loss evolved on 10-shot digits, beside classical losses")
plt.show()

# %%
# Like cross-entropy it falls steeply while the prediction is wrong, but it bottoms out
# around ``p = 0.85`` and *rises* for more confident predictions: its derivative turns
# positive, so training pushes back on over-confidence -- what label smoothing does, only
# more strongly. Its linear term alone (``a0, a1`` below) is close to label smoothing with
# a strength of about 0.14 (``a1 = eps, a0 = -eps / C``); the small network adds the rest.
p = np.array([0.5, 0.85, 0.95, 0.99])
for name in ("cross_entropy", "label_smoothing"):
    print(f"{name:>16}: d loss / d p at p={p} is {loss_curve(name, p)[1].round(2)}")
print(f"{'evolved':>16}: d loss / d p at p={p} is {loss_curve(evolved, p)[1].round(2)}")
print("linear term a0, a1 =", evolved.get_flat_params()[:2].round(3))

# %%
# A freshly evolved loss, with a small budget
# -------------------------------------------
# Evolution starts from cross-entropy exactly. Even a short run with a larger step size
# (``sigma0=0.1``) can move far from it. Only the *derivative* matters for training -- a
# constant offset of the loss changes nothing -- and different losses can train equally
# good classifiers, so shapes differ from run to run: judge a loss by its held-out
# accuracy (:ref:`sphx_glr_auto_examples_plot_06_learning_curves.py`), not by its look.
X, y = load_digits_images(return_X_y=True)
evolver = MLNEvolver(
    n_shots=10,
    n_tasks=4,
    popsize=8,
    n_generations=3 if FAST else 10,
    sigma0=0.1,
    inner_steps=50,
    inner_lr=0.1,
    n_reeval_tasks=8,
    n_jobs=2,
    random_state=0,
).fit(X[:900].reshape(900, -1), y[:900])
print("chosen:", evolver.reevaluation_["chosen"])
plot_loss_shape(evolver, baselines=("cross_entropy", "label_smoothing"), label="fresh")
plt.show()

# %%
# The search space around cross-entropy
# -------------------------------------
# What CMA-ES tries in its first generation: random perturbations of the starting point
# with the default step size ``sigma0 = 0.05`` (thin lines), around cross-entropy (thick).
# Small changes of the weights already give very different losses. Several are clipped to
# zero by the ``relu`` of the anchor over much of the range -- they stop pushing once a
# sample is predicted with some confidence -- and one rises steeply near ``p = 1``.
# Evolution keeps what trains good classifiers.
rng = np.random.RandomState(0)
start = MetaLossNetwork(n_classes=10, random_state=0)
fig, axes = plt.subplots(1, 2, figsize=(9.6, 3.8), layout="constrained")
for _ in range(6):
    theta = start.get_flat_params() + 0.05 * rng.standard_normal(start.n_params)
    candidate = MetaLossNetwork(n_classes=10, random_state=0).set_flat_params(theta)
    plot_loss_shape(candidate, baselines=(), ax=axes, label="candidate")
for line in [*axes[0].get_lines(), *axes[1].get_lines()]:
    line.set(color="C0", linewidth=1, alpha=0.6)
plot_loss_shape(start, baselines=(), ax=axes, label="cross-entropy (start)")
axes[0].legend(axes[0].get_lines()[-2:], ["candidates", "cross-entropy (start)"])
plt.show()
