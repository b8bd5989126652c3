"""Evolved meta-losses shipped with the package, with their provenance."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).parent

#: name -> file shipped in this folder. Each file's ``metadata`` holds its provenance and,
#: under ``"regenerate"``, the one command that rebuilds it bit for bit.
PRETRAINED: dict[str, str] = {
    # evolved on the default SmallCNN, 10-shot Fashion-MNIST train-split tasks
    "fashion-mnist": "fashion-mnist.mln",
}


def load_pretrained(name: str):
    """Load a meta-loss shipped with the package.

    Parameters
    ----------
    name : str
        One of ``sklearn_mln.pretrained.PRETRAINED``.

    Returns
    -------
    MetaLossNetwork
        Its ``metadata`` holds the provenance (command, seed, data, fitness, date, version).

    Examples
    --------
    >>> from sklearn_mln import load_pretrained
    >>> loss = load_pretrained("fashion-mnist")
    >>> loss.metadata["dataset"]
    'fashion-mnist'
    """
    from .._meta_loss import load_meta_loss

    if name not in PRETRAINED:
        raise ValueError(f"Unknown pretrained loss {name!r}; available: {sorted(PRETRAINED)}.")
    return load_meta_loss(_HERE / PRETRAINED[name])
