"""Image data sets for meta-loss experiments, as ``(n, channels, height, width)`` arrays.

Three loaders, all returning ``X`` as float32 in ``[0, 1]`` and ``y`` as int64:

- :func:`load_digits_images`: scikit-learn's embedded 8x8 digits (the default data set).
- :func:`load_fashion_mnist`: Fashion-MNIST from its original IDX files.
- :func:`load_cifar10`: CIFAR-10 from its "python version" pickled batches.

:func:`load_splits` gives a data set's pool and held-out splits, as evolution and the
benchmark use them.

Nothing is ever downloaded: the files are looked for in ``data_home``, then in the folder named by
the ``SKLEARN_MLN_DATA`` environment variable, then (Fashion-MNIST only) in the folder of the
Debian package ``dataset-fashion-mnist``.
"""

from ._loaders import (
    CIFAR10_CLASSES as CIFAR10_CLASSES,
)
from ._loaders import (
    FASHION_MNIST_CLASSES as FASHION_MNIST_CLASSES,
)
from ._loaders import (
    load_cifar10,
    load_digits_images,
    load_fashion_mnist,
)
from ._splits import load_splits

__all__ = ["load_digits_images", "load_fashion_mnist", "load_cifar10", "load_splits"]
