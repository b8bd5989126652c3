"""Meta-Loss Networks: learned loss functions for small-data classification.

A meta-loss network (MLN) is a small neural network that *is* a loss function. It is
evolved with CMA-ES so that small classifiers trained with it on small data sets
generalise well (Hai & Liu, "Evolving parametrized Loss for Image Classification
Learning on Small Datasets").
"""

from ._classifier._estimator import MLNClassifier
from ._classifier._nets import MLP, SmallCNN
from ._evolution._evolver import MLNEvolver
from ._losses._classical import ClassicalLoss
from ._losses._meta_loss import MetaLossNetwork, load_meta_loss
from ._model_selection._cv import MLNClassifierCV
from ._utils._config import config_context, get_config, set_config
from ._version import __version__
from .pretrained import load_pretrained

__all__ = [
    "ClassicalLoss",
    "MLP",
    "MLNClassifier",
    "MLNClassifierCV",
    "MLNEvolver",
    "MetaLossNetwork",
    "SmallCNN",
    "config_context",
    "get_config",
    "load_meta_loss",
    "load_pretrained",
    "set_config",
    "__version__",
]
