"""Evolved meta-losses shipped with the package, with their provenance.

Each file's ``metadata`` holds how it was made (the evolver's parameters, the data, the
seed, the command and the commit under ``"regenerate"``), written by the program that made
it. ``benchmarks/tools/regenerate_pretrained.py`` re-runs that command and re-evaluates the
file; what reproduces on which machine is on the docs' Reproducing page, from the results
that tool writes (``benchmarks/results/evolution/fashion-mnist-reproduction.json``).

``fashion-mnist``
    Per-class, anchored at cross-entropy, evolved on the default small CNN with 10-shot
    Fashion-MNIST training-split tasks. The small-data benchmark found it to be rescaled
    label smoothing; ``MLNClassifier()`` does not use it by default.
"""

from __future__ import annotations

from pathlib import Path

from .._losses._meta_loss import MetaLossNetwork, load_meta_loss

_HERE = Path(__file__).parent

#: name -> file shipped in this folder. Each file's ``metadata`` holds its provenance and,
#: under ``"regenerate"``, the command that evolved it (see the module docstring for what
#: that command reproduces today).
PRETRAINED: dict[str, str] = {
    # evolved on the default SmallCNN, 10-shot Fashion-MNIST train-split tasks
    "fashion-mnist": "fashion-mnist.mln",
}


def load_pretrained(name: str) -> MetaLossNetwork:
    """Load a meta-loss shipped with the package.

    Parameters
    ----------
    name : str
        One of ``sklearn_mln.pretrained.PRETRAINED``.

    Returns
    -------
    MetaLossNetwork
        With frozen weights (``requires_grad`` off): a shipped loss is a fixed function,
        and a training loop that uses it as its criterion then computes no gradient for
        the loss's own weights (which its optimizer would not step). Call
        ``loss.requires_grad_()`` to meta-train it further. Its ``metadata`` holds the
        provenance (command, seed, data, fitness, date, version); see
        :mod:`sklearn_mln.pretrained` for what of it reproduces with this version.

    Examples
    --------
    >>> from sklearn_mln import load_pretrained
    >>> loss = load_pretrained("fashion-mnist")
    >>> loss.metadata["dataset"]
    'fashion-mnist'
    """
    if name not in PRETRAINED:
        raise ValueError(f"Unknown pretrained loss {name!r}; available: {sorted(PRETRAINED)}.")
    return load_meta_loss(_HERE / PRETRAINED[name]).requires_grad_(False)
