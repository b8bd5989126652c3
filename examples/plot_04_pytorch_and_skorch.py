"""
============================================
An evolved loss in PyTorch and in skorch
============================================

A :class:`~sklearn_mln.MetaLossNetwork` has the call convention of
:class:`torch.nn.CrossEntropyLoss` -- ``loss(logits, y)`` -- so it drops into a plain
PyTorch training loop, and into skorch as ``NeuralNetClassifier(criterion=...)``.
"""

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.model_selection import train_test_split
from skorch import NeuralNetClassifier

from sklearn_mln import MLP, MLNEvolver
from sklearn_mln.datasets import load_digits_images

FAST = os.environ.get("SKLEARN_MLN_EXAMPLES_FAST") == "1"  # smaller budgets in CI

X, y = load_digits_images(return_X_y=True)
X = X.reshape(len(X), -1)
X_pool, X_held, y_pool, y_held = train_test_split(X, y, test_size=0.5, stratify=y, random_state=0)
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
meta_loss = evolver.meta_loss_  # a frozen MetaLossNetwork: requires_grad is False
print(meta_loss)

# %%
# 10 images per class to train on, the rest of the held-out half to test on.
rng = np.random.RandomState(0)
train = np.concatenate(
    [rng.choice(np.flatnonzero(y_held == c), 10, replace=False) for c in range(10)]
)
test = np.setdiff1d(np.arange(len(y_held)), train)
X_train, y_train = torch.as_tensor(X_held[train]), torch.as_tensor(y_held[train])
X_test, y_test = torch.as_tensor(X_held[test]), torch.as_tensor(y_held[test])

# %%
# A plain PyTorch loop
# --------------------
# The loss is used exactly like ``torch.nn.CrossEntropyLoss()``. Only the classifier's
# parameters go to the optimizer.
STEPS = 50


def train_and_track(loss_fn, seed):
    torch.manual_seed(seed)
    model = MLP(n_features=64, n_classes=10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    accuracy = []
    for _ in range(STEPS):
        optimizer.zero_grad()
        loss = loss_fn(model(X_train), y_train)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            accuracy.append((model(X_test).argmax(1) == y_test).float().mean().item())
    return accuracy


curves = {
    "cross-entropy": train_and_track(torch.nn.CrossEntropyLoss(), seed=0),
    "evolved": train_and_track(meta_loss, seed=0),  # same initial weights
}
fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
for (name, accuracy), color in zip(curves.items(), ["C0", "C3"]):
    ax.plot(range(1, STEPS + 1), accuracy, label=name, color=color)
ax.set_xlabel("SGD step (full batch)")
ax.set_ylabel("test accuracy")
ax.set_title("the same MLP, initial weights and data; two losses")
ax.legend()
plt.show()

# %%
# As skorch's criterion
# ---------------------
# Pass the network instance as ``criterion``. Three skorch settings matter here:
#
# * ``predict_nonlinearity``: skorch applies a softmax in ``predict_proba`` only for
#   ``CrossEntropyLoss``; give it one for any other criterion;
# * ``train_split=None``: skorch would hold out 20 % of 100 images for validation;
# * ``batch_size=-1`` for full-batch training, as in evolution.
#
# skorch also hands the criterion's parameters to the optimizer; they are frozen, so they
# never change. (:class:`~sklearn_mln.MLNClassifier` does all of this for you.)
net = NeuralNetClassifier(
    MLP,
    module__n_features=64,
    module__n_classes=10,
    criterion=meta_loss,
    predict_nonlinearity=torch.nn.Softmax(dim=-1),
    optimizer=torch.optim.SGD,
    optimizer__momentum=0.9,
    lr=0.1,
    max_epochs=STEPS,
    batch_size=-1,
    train_split=None,
    verbose=0,
)
torch.manual_seed(0)
net.fit(X_held[train], y_held[train])
print(f"skorch + evolved loss, test accuracy: {net.score(X_held[test], y_held[test]):.4f}")
print("predict_proba rows sum to", net.predict_proba(X_held[test][:3]).sum(1))
print("the loss is unchanged:", torch.equal(net.criterion_.theta, meta_loss.theta))
