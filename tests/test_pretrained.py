import numpy as np
import pytest
import torch

from sklearn_mln import MetaLossNetwork, MLNClassifier, load_pretrained
from sklearn_mln.datasets import load_digits_images
from sklearn_mln.pretrained import PRETRAINED

PROVENANCE = {"command", "dataset", "date", "package_version", "params", "reevaluated_fitness"}


@pytest.mark.parametrize("name", sorted(PRETRAINED))
def test_shipped_loss_loads_with_provenance(name):
    loss = load_pretrained(name)
    assert isinstance(loss, MetaLossNetwork)
    assert PROVENANCE <= set(loss.metadata)
    assert "regenerate" in loss.metadata  # the one documented command that rebuilds it
    logits, y = torch.randn(6, 10), torch.arange(6)
    value = loss(logits, y)
    assert torch.isfinite(value) and value >= 0


@pytest.mark.parametrize("name", sorted(PRETRAINED))
def test_classifier_accepts_pretrained_name(name):
    X, y = load_digits_images(return_X_y=True)
    clf = MLNClassifier(meta_loss=name, max_epochs=100, random_state=0).fit(X[:100], y[:100])
    np.testing.assert_array_equal(
        clf.loss_.get_flat_params(), load_pretrained(name).get_flat_params()
    )
    assert clf.score(X[100:], y[100:]) > 0.6


def test_fashion_mnist_is_shipped():
    assert "fashion-mnist" in PRETRAINED


def test_unknown_pretrained_name():
    with pytest.raises(ValueError, match="Unknown pretrained"):
        load_pretrained("imagenet")
