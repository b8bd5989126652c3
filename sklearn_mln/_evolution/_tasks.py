"""Few-shot task sampling with explicit seeds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Task:
    """A small training set drawn from a pool.

    Attributes
    ----------
    train_indices : ndarray of int
        Rows of the pool, ``n_shots`` per class, grouped by class.
    classes : ndarray of int
        The (encoded) classes of the task, sorted; a class's position is its task label.
    """

    train_indices: np.ndarray
    classes: np.ndarray

    def relabel(self, y: np.ndarray) -> np.ndarray:
        """Map pool labels to task labels (``-1`` for classes outside the task)."""
        mapping = np.full(int(max(y.max(initial=0), self.classes.max())) + 1, -1, dtype=np.int64)
        mapping[self.classes] = np.arange(len(self.classes))
        return mapping[y]


def class_indices(y: np.ndarray, n_classes: int) -> list[np.ndarray]:
    """Row indices of each encoded class, ``0`` to ``n_classes - 1``."""
    return [np.flatnonzero(y == c) for c in range(n_classes)]


def sample_tasks(
    indices_by_class: list[np.ndarray],
    n_tasks: int,
    n_shots: int,
    n_ways: int | None,
    rng: np.random.RandomState,
) -> list[Task]:
    """Draw ``n_tasks`` tasks of ``n_shots`` examples for each of ``n_ways`` classes.

    ``n_ways=None`` uses every class. Sampling is without replacement within a task.
    """
    n_classes = len(indices_by_class)
    n_ways = n_classes if n_ways is None else n_ways
    tasks = []
    for _ in range(n_tasks):
        if n_ways == n_classes:
            classes = np.arange(n_classes)
        else:
            classes = np.sort(rng.choice(n_classes, size=n_ways, replace=False))
        rows = [rng.choice(indices_by_class[c], size=n_shots, replace=False) for c in classes]
        tasks.append(Task(np.concatenate(rows), classes))
    return tasks


def draw_seeds(rng: np.random.RandomState, n: int) -> np.ndarray:
    """``n`` independent 31-bit seeds drawn from ``rng``."""
    return rng.randint(1, np.iinfo(np.int32).max, size=n)
