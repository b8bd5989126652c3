"""A data set's pool / test splits: what evolution and tuning see, and what they never see."""

from __future__ import annotations

import numpy as np

from ._loaders import load_cifar10, load_digits_images, load_fashion_mnist


def load_splits(
    dataset="digits",
    *,
    data_home=None,
    pool_size=None,
    test_size=None,
    seed=0,
    data=None,
    label_column=None,
    standardize=False,
):
    """``(X_pool, y_pool, X_test, y_test)`` of a data set: evolution and tuning see the pool.

    Digits and a ``data`` file (see :func:`~sklearn_mln.datasets._user_data.read_data_file`) are
    split 50 / 50 (stratified, ``seed``); Fashion-MNIST and CIFAR-10 use their own train /
    test splits. ``pool_size`` and ``test_size`` subsample a split (stratified, ``seed``).

    Parameters
    ----------
    dataset : {"digits", "fashion-mnist", "cifar10"}, default="digits"
    data_home : str or path-like, optional
        Folder of the Fashion-MNIST IDX files or the CIFAR-10 python batches.
    pool_size, test_size : int, optional
        Stratified subsample sizes; ``None`` keeps the whole split.
    seed : int, default=0
    data : str or path-like, optional
        A file or folder of the user's own data, instead of ``dataset``.
    label_column : str or int, optional
        The label column of a CSV ``data`` file.
    standardize : bool, default=False
        Scale flat features (``(n, d)`` data, such as a CSV file) to zero mean and unit
        variance with the pool's statistics, applied to both splits (constant features are
        centred only). Small classifiers trained by SGD at the library's step sizes fail on
        raw features of very different scales; images are left as they are.

    Returns
    -------
    X_pool, y_pool, X_test, y_test : ndarray
    """
    from sklearn.model_selection import train_test_split

    from ._user_data import read_data_file

    loaders = {"fashion-mnist": load_fashion_mnist, "cifar10": load_cifar10}
    if data is not None or dataset == "digits":
        if data is not None:
            X, y = read_data_file(data, label_column=label_column)
        else:
            X, y = load_digits_images(return_X_y=True)
        X_pool, X_test, y_pool, y_test = train_test_split(
            X, y, test_size=0.5, stratify=y, random_state=seed
        )
    elif dataset in loaders:
        X_pool, y_pool = loaders[dataset]("train", data_home=data_home, return_X_y=True)
        X_test, y_test = loaders[dataset]("test", data_home=data_home, return_X_y=True)
    else:
        raise ValueError(f"Unknown dataset {dataset!r}; choose from {['digits', *loaders]}.")
    if pool_size is not None and pool_size < len(y_pool):
        X_pool, _, y_pool, _ = train_test_split(
            X_pool, y_pool, train_size=pool_size, stratify=y_pool, random_state=seed
        )
    if test_size is not None and test_size < len(y_test):
        X_test, _, y_test, _ = train_test_split(
            X_test, y_test, train_size=test_size, stratify=y_test, random_state=seed
        )
    if standardize and X_pool.ndim == 2:
        X_pool, X_test = standardized(X_pool, X_test)
    return X_pool, y_pool, X_test, y_test


def standardized(X_pool: np.ndarray, X_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both splits scaled by the pool's mean and standard deviation, as float32."""
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(X_pool)
    return (
        scaler.transform(X_pool).astype(np.float32),
        scaler.transform(X_test).astype(np.float32),
    )
