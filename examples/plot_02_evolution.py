"""
===================================
Evolving a loss: the fitness curve
===================================

Run :class:`~sklearn_mln.MLNEvolver` and look at what happened, generation by
generation, with :func:`~sklearn_mln.plotting.plot_evolution`: the best, mean and median
fitness of each population and the CMA-ES step size ``sigma``.
"""

# %%
import os

import matplotlib.pyplot as plt
from sklearn.model_selection import train_test_split

from sklearn_mln import MLNEvolver
from sklearn_mln.datasets import load_digits_images
from sklearn_mln.plotting import plot_evolution

FAST = os.environ.get("SKLEARN_MLN_EXAMPLES_FAST") == "1"  # smaller budgets in CI

X, y = load_digits_images(return_X_y=True)
X = X.reshape(len(X), -1)
X_pool, X_held, y_pool, y_held = train_test_split(X, y, test_size=0.5, stratify=y, random_state=0)

# %%
# Evolve
# ------
# ``max_time`` bounds the run in seconds as well as ``n_generations``; whichever comes
# first stops it (``stop_reason_`` says which).
evolver = MLNEvolver(
    n_shots=10,
    n_tasks=4,
    popsize=8,
    n_generations=4 if FAST else 16,
    max_time=60,
    sigma0=0.1,
    inner_steps=50,
    inner_lr=0.1,
    n_reeval_tasks=8,
    n_jobs=2,
    random_state=1,
).fit(X_pool, y_pool)
print(f"{evolver.n_generations_} generations, stopped by {evolver.stop_reason_!r}")
for record in evolver.history_[:3]:
    print({k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()})

# %%
# The fitness curve
# -----------------
# Fitness is the validation accuracy of classifiers trained with a candidate loss on a few
# freshly drawn tasks, so it is noisy: the tasks change every generation, and the curves
# move with them. The median shows where the population is; the mean is pulled down by
# candidates whose training failed (they score 0). The dotted line is the fitness of the
# loss finally chosen, *re-evaluated* on a fixed, larger set of tasks -- the number to
# trust.
ax = plot_evolution(evolver)
ax.set_title("MLNEvolver on 10-shot digits")
plt.show()

# %%
# Which loss was chosen
# ---------------------
# The final loss comes from a shortlist: the starting point (cross-entropy), the final
# CMA-ES mean and the best candidates of recent generations, all re-evaluated on the same
# ``n_reeval_tasks`` tasks. Ties go to the starting point.
for label, fitness in zip(evolver.reevaluation_["labels"], evolver.reevaluation_["fitness"]):
    mark = "  <- chosen" if label == evolver.reevaluation_["chosen"] else ""
    print(f"{label:>26}: {fitness:.4f}{mark}")

# %%
# Meta-test on data evolution never saw
# -------------------------------------
# :meth:`~sklearn_mln.MLNEvolver.score` trains classifiers with the evolved loss on fresh
# 10-shot tasks drawn from the held-out half and scores each on the rest of it.
print(f"held-out accuracy: {evolver.score(X_held, y_held):.4f}")

# %%
# The loss is a small network with provenance, and can be saved and loaded (a ``.npz``
# file; loading executes nothing from it):
#
# .. code-block:: python
#
#    evolver.meta_loss_.save("my-loss.mln")
#    loss = sklearn_mln.load_meta_loss("my-loss.mln")
print(evolver.meta_loss_)
print({k: evolver.meta_loss_.metadata[k] for k in ("generations", "reevaluated_fitness")})
