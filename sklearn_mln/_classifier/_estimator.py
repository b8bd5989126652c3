"""MLNClassifier: a small neural classifier trained with a (meta-)loss, on skorch.

The estimator validates the data, encodes the labels, resolves ``meta_loss`` into a frozen
loss module and hands the training loop to a :class:`skorch.NeuralNetClassifier` (so
callbacks, ``history_`` and printing are skorch's). The loss is the net's criterion; its
parameters are kept out of the optimizer.
"""

from __future__ import annotations

import copy
import inspect
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context, clone
from sklearn.preprocessing import LabelEncoder
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from skorch import NeuralNetClassifier
from torch import nn

from .._losses._meta_loss import examples_per_class
from .._losses._resolve import resolve_loss
from .._utils._device import cuda_index
from .._utils._docstrings import (
    FIT_SECTIONS,
    PREDICT_PROBA_SECTIONS,
    PREDICT_SECTIONS,
    fill_doc,
)
from .._utils._threads import threads_for_training, torch_threads
from .._utils._validation import check_random_state, check_sample_shape
from ._nets import default_module_factory
from ._routing import RoutedParamsMixin

_MAX_SEED = np.iinfo(np.int32).max
#: What ``MLNClassifier()`` trains with (``meta_loss="auto"``), per kind of input:
#: ``(loss, lr, epochs)``, the classical setting with the smallest mean tuning regret over
#: the benchmark's rows (k = 1 .. 50 for the MLP, 1 .. 20 for the CNN) for the default
#: classifier of that input in the Fashion-MNIST benchmark
#: (chosen on tuning tasks only; benchmarks/tools/default_classifier.py writes the choice and
#: its test, benchmarks/results/default_classifier.md; a test keeps the two equal). No
#: learned loss passed the rule for the default (not significantly worse than the best
#: tuned classical loss at any k and architecture).
AUTO_TRAINING: dict[str, tuple[str, float, int]] = {
    "images": ("label_smoothing(smoothing=0.9)", 0.3, 100),
    "flat": ("cross_entropy", 0.03, 200),
}
#: lr and epochs for a loss the user chose, when ``lr`` / ``max_epochs`` are left at None
MANUAL_DEFAULTS: tuple[float, int] = (0.03, 100)


def _softmax(logits: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits, dim=-1)


class _FrozenCriterionNet(NeuralNetClassifier):
    """A skorch classifier whose optimizer sees the module's parameters only, and whose
    meta-loss is told the examples per class of ``y`` when training begins and the
    training progress at each epoch (skorch's ``on_train_begin`` / ``on_epoch_begin``
    hooks, which ``callbacks="disable"`` leaves in place).

    skorch hands the criterion's parameters to the optimizer too (a trap for a loss that
    is itself a network); the meta-loss is fixed while a classifier trains.
    """

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        """Tell a meta-loss the size of the training set: examples per class of ``y``."""
        super().on_train_begin(net, X=X, y=y, **kwargs)
        if hasattr(self.criterion_, "shots") and y is not None:
            self.criterion_.shots = examples_per_class(np.asarray(y))

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        """Tell a meta-loss the training progress: completed epochs over ``max_epochs``."""
        super().on_epoch_begin(
            net, dataset_train=dataset_train, dataset_valid=dataset_valid, **kwargs
        )
        if hasattr(self.criterion_, "progress"):
            self.criterion_.progress = min(1.0, (len(self.history) - 1) / self.max_epochs)

    def get_all_learnable_params(self):
        seen = set()
        for name in self._modules:
            for param_name, param in getattr(self, name + "_").named_parameters():
                if param not in seen:
                    seen.add(param)
                    yield param_name, param


def _check_module_output(net: NeuralNetClassifier, X: np.ndarray, n_classes: int) -> None:
    """Fail early, with a clear message, when the module does not output ``(n, n_classes)``."""
    module = net.module_
    training = module.training
    module.eval()
    try:
        with torch.no_grad():
            out = module(torch.as_tensor(X, device=net.device))
    finally:
        module.train(training)
    out = out[0] if isinstance(out, tuple) else out
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (len(X), n_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"The module must output logits of shape (n_samples, n_classes) = "
            f"({len(X)}, {n_classes}); it output {shape}."
        )


def _rng_devices(device) -> list[int]:
    index = cuda_index(device)
    return [] if index is None else [index]


class MLNClassifier(RoutedParamsMixin, ClassifierMixin, BaseEstimator):
    """Neural classifier trained with a classical or meta-learned loss, on skorch.

    Trains a small network (an MLP on flat input, a small CNN on images) from scratch with
    a loss that may be a meta-loss network evolved by :class:`MLNEvolver`. Training is a
    :class:`skorch.NeuralNetClassifier`: callbacks, ``history_`` and the printed log are
    skorch's.

    Parameters
    ----------
    module : None, torch.nn.Module class or instance, or callable, default=None
        The classifier; it must output logits ``(n, n_classes)``. ``None`` builds the
        default for the input: :class:`SmallCNN` for images ``(n, c, h, w)``,
        :class:`MLP` (one hidden layer of 64) for flat ``(n, d)`` data. A class is
        instantiated with the ``module__*`` arguments; its ``n_features``, ``n_classes``,
        ``in_channels`` and ``image_size`` arguments, when it has them and they are not
        given, are filled in from the data. An instance is copied before training, so the
        parameter itself is never changed (and ``random_state`` does not re-draw its
        weights).
    meta_loss : "auto", str, path, MetaLossNetwork, ClassicalLoss or fitted MLNEvolver, \
            default="auto"
        The training loss: ``"auto"``, a classical loss name (``"cross_entropy"``,
        ``"mse"``, ``"label_smoothing"``, ``"focal"``, ``"poly1"``), optionally with its
        parameters (``"label_smoothing(smoothing=0.9)"``), the name of a shipped pretrained
        loss, the path of a saved meta-loss, a loss module or a fitted evolver. A frozen
        copy is used. ``"auto"`` trains with the loss, learning rate and epochs of
        :data:`AUTO_TRAINING` for the kind of input (images or flat features): the best
        setting measured for the default classifier of that input (see Notes).
    max_epochs : int or None, default=None
        Passes over the training data. With ``batch_size=-1`` this is the number of SGD
        steps. ``None``: from :data:`AUTO_TRAINING` with ``meta_loss="auto"``, else 100.
    lr : float or None, default=None
        Learning rate. ``None``: from :data:`AUTO_TRAINING` with ``meta_loss="auto"``, else
        0.03 (with the default momentum 0.9 an effective step of 0.3, stable for the
        default CNN and MLP on small data with cross-entropy).
    momentum : float, default=0.9
        Passed to the optimizer as ``optimizer__momentum`` when the optimizer accepts a
        ``momentum`` argument (``torch.optim.SGD`` does); ignored otherwise. An explicit
        ``optimizer__momentum`` takes precedence.
    batch_size : int, default=-1
        Mini-batch size; ``-1`` means the whole training set (full batch, the natural
        choice for small data). Mini-batches are shuffled every epoch.
    optimizer : torch.optim.Optimizer class, default=torch.optim.SGD
    train_split : None or callable, default=None
        skorch's ``train_split``; ``None`` trains on all of the data (skorch's own default
        would hold out 20 %, too much for small data). Pass e.g.
        ``skorch.dataset.ValidSplit(5)`` to track a validation loss.
    callbacks : None, list or "disable", default=None
        skorch callbacks (``EpochScoring``, ``EarlyStopping``, ...), added to skorch's
        defaults. They are copied at fit time; the trained ones are in
        ``net_.callbacks_``.
    device : str or torch.device, default="cpu"
    n_threads : "auto", int or None, default="auto"
        Torch threads ``fit`` and ``predict`` run at; the caller's setting is restored
        after. ``"auto"``: one thread when a training step is bound by per-op overhead
        (under :data:`~sklearn_mln._utils._threads.SMALL_WORK_FLOPS`, counted on one
        sample: an MLP on small data), else the caller's setting capped at the cores idle
        when ``fit`` starts (threads sharing a busy core make a small net's fit many times
        slower). ``None``: always the caller's setting. The thread count can change the
        last bits of a result, so pass an int where a fit must reproduce bit for bit on a
        machine whose load varies.
    random_state : int, RandomState instance or None, default=None
        Seeds the weight initialization and the shuffling of mini-batches; ``None`` seeds
        them from fresh operating-system entropy. Neither ``fit`` nor ``predict`` moves
        NumPy's or torch's global generator.
    verbose : int, default=0
        skorch's verbosity; ``0`` prints nothing.
    **kwargs
        skorch-routed arguments, each ``<prefix>__<name>`` with a prefix among
        ``module``, ``optimizer``, ``iterator_train``, ``iterator_valid``, ``callbacks`` and
        ``dataset`` (e.g. ``module__hidden_sizes=(32,)``, ``optimizer__weight_decay=1e-4``).
        They are parameters like any other (``get_params``, ``set_params``, grid search).
        As for every parameter, ``fit`` checks them: a key without such a prefix raises a
        ``TypeError`` there, naming the prefix it probably lacks.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels.
    n_features_in_ : int
        Number of features seen in fit: ``d`` for flat input, ``c * h * w`` for images.
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        Names of the features, when ``X`` is a DataFrame with string column names.
    sample_shape_ : tuple of int
        Shape of one sample, ``(d,)`` or ``(c, h, w)``; predict expects the same.
    loss_ : torch.nn.Module
        The frozen loss the classifier was trained with.
    lr_ : float
        The learning rate it was trained with.
    max_epochs_ : int
        The number of epochs it was trained for.
    net_ : NeuralNetClassifier
        The fitted skorch net.
    module_ : torch.nn.Module
        The trained classifier (``net_.module_``).
    history_ : skorch.History
        One row per epoch (``train_loss``, and whatever the callbacks record).
    n_threads_ : int or None
        The torch threads ``fit`` ran at (``None``: the caller's setting); ``predict``
        runs at the same.

    See Also
    --------
    MLNEvolver : Evolve a meta-loss for small-data classification.
    MetaLossNetwork : The meta-loss network.
    skorch.NeuralNetClassifier : The training loop used here.

    Notes
    -----
    The meta-loss is skorch's criterion, a frozen copy: its parameters are not given to the
    optimizer and do not change during fit. ``predict_proba`` is the softmax of the
    module's logits (float64, rows summing to one); ``predict`` maps back to ``classes_``.

    The defaults (``meta_loss="auto"``) come from the small-data benchmark on
    Fashion-MNIST (``benchmarks/small_data_v2.py``, docs' Results page): every
    classical loss tuned over its own hyperparameters, learning rate and epochs, the
    evolved losses over learning rate and epochs. No learned loss was at least as good as
    the best tuned classical loss at every k on every architecture, so the front door uses
    the classical setting that did best on tuning tasks for the default classifier of the
    input (:data:`AUTO_TRAINING`): very strong label smoothing with a large step for the
    CNN on images, cross-entropy with a small step and more epochs for the MLP on flat
    features.

    Examples
    --------
    >>> from sklearn_mln import MLNClassifier
    >>> from sklearn_mln.datasets import load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> clf = MLNClassifier(random_state=0).fit(X[:100], y[:100])
    >>> clf.predict(X[100:105]).shape
    (5,)
    >>> bool(clf.score(X[100:400], y[100:400]) > 0.5)
    True
    """

    _parameter_constraints: dict = {
        "module": [None, callable],
        "meta_loss": "no_validation",  # resolve_loss raises clear errors
        "max_epochs": [Interval(Integral, 1, None, closed="left"), None],
        "lr": [Interval(Real, 0, None, closed="neither"), None],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "batch_size": [Interval(Integral, 1, None, closed="left"), Options(Integral, {-1})],
        "optimizer": [callable],
        "train_split": [None, callable],
        "callbacks": [None, list, StrOptions({"disable"})],
        "device": [str, torch.device],
        "random_state": ["random_state"],
        "n_threads": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left"), None],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        module=None,
        meta_loss="auto",
        *,
        max_epochs=None,
        lr=None,
        momentum=0.9,
        batch_size=-1,
        optimizer=torch.optim.SGD,
        train_split=None,
        callbacks=None,
        device="cpu",
        n_threads="auto",
        random_state=None,
        verbose=0,
        **kwargs,
    ):
        self.module = module
        self.meta_loss = meta_loss
        self.max_epochs = max_epochs
        self.lr = lr
        self.momentum = momentum
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.train_split = train_split
        self.callbacks = callbacks
        self.device = device
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose
        vars(self).update(kwargs)

    # ------------------------------------------------------------------ params
    def __sklearn_clone__(self):
        # A fitted evolver passed as meta_loss is data, not a sub-estimator to refit: the
        # default clone would hand GridSearchCV an unfitted one.
        keep = "meta_loss" if hasattr(self.meta_loss, "meta_loss_") else None
        params = self.get_params(deep=False)
        return type(self)(
            **{k: v if k == keep else clone(v, safe=False) for k, v in params.items()}
        )

    # ------------------------------------------------------------------ building the net
    def _module_and_kwargs(self, n_classes: int) -> tuple:
        user = self._prefixed("module")
        shape = self.sample_shape_
        if self.module is None:
            return default_module_factory(shape, n_classes), user
        module = self.module
        if isinstance(module, nn.Module) and not user:
            return copy.deepcopy(module), user
        target = type(module) if isinstance(module, nn.Module) else module
        inferred = {"n_features": self.n_features_in_, "n_classes": n_classes}
        if len(shape) == 3:
            inferred.update(in_channels=shape[0], image_size=shape[1:])
        try:
            accepted = inspect.signature(target).parameters
        except (TypeError, ValueError):
            accepted = {}
        kwargs = {f"module__{k}": v for k, v in inferred.items() if k in accepted}
        return module, {**kwargs, **user}

    def _optimizer_kwargs(self) -> dict:
        kwargs = {}
        try:
            accepted = inspect.signature(self.optimizer).parameters
        except (TypeError, ValueError):
            accepted = {}
        if "momentum" in accepted:
            kwargs["optimizer__momentum"] = self.momentum
        return {**kwargs, **self._prefixed("optimizer")}

    def _threads(self, net, X: np.ndarray) -> int | None:
        """Torch threads of this fit: ``n_threads``, or for ``"auto"``
        :func:`~sklearn_mln._utils._threads.threads_for_training`'s choice."""
        if self.n_threads != "auto":
            return self.n_threads
        if torch.device(self.device).type != "cpu":
            return None
        sample = torch.as_tensor(X[:1], device=self.device)
        return threads_for_training(net.module_, sample, len(X), self.batch_size)

    def _training_setting(self, X: np.ndarray) -> tuple:
        """The loss, learning rate and epochs this fit trains with (see ``meta_loss``)."""
        if isinstance(self.meta_loss, str) and self.meta_loss == "auto":
            loss, lr, epochs = AUTO_TRAINING["images" if X.ndim == 4 else "flat"]
        else:
            (lr, epochs), loss = MANUAL_DEFAULTS, self.meta_loss
        lr = lr if self.lr is None else self.lr
        return loss, float(lr), int(epochs if self.max_epochs is None else self.max_epochs)

    # ------------------------------------------------------------------ fit / predict
    @_fit_context(prefer_skip_nested_validation=True)
    @fill_doc(fit_sections=FIT_SECTIONS)
    def fit(self, X, y):
        """Train the classifier from scratch on ``(X, y)``.

        {fit_sections}
        """
        self._check_extra_names()
        X, y = validate_data(self, X, y, dtype=np.float32, allow_nd=True)
        X = check_sample_shape(self, X, reset=True)
        check_classification_targets(y)
        encoder = LabelEncoder().fit(y)
        self.classes_ = encoder.classes_
        if len(self.classes_) < 2:
            raise ValueError(
                f"{type(self).__name__} needs at least two classes in y; got 1 class: "
                f"{self.classes_.tolist()}."
            )
        y_encoded = encoder.transform(y).astype(np.int64)
        loss, self.lr_, self.max_epochs_ = self._training_setting(X)
        self.loss_ = resolve_loss(loss)
        spec = getattr(self.loss_, "spec", None)
        if spec is not None and spec.structure == "joint" and spec.n_classes != len(self.classes_):
            raise ValueError(
                f"meta_loss is a joint meta-loss for {spec.n_classes} classes but y has "
                f"{len(self.classes_)}; use a per_class meta-loss for any number of classes."
            )

        module, module_kwargs = self._module_and_kwargs(len(self.classes_))
        extra = {
            **module_kwargs,
            **self._optimizer_kwargs(),
            **{
                k: v
                for p in ("iterator_train", "iterator_valid", "callbacks", "dataset")
                for k, v in self._prefixed(p).items()
            },
        }
        if self.batch_size != -1:
            extra.setdefault("iterator_train__shuffle", True)
        net = _FrozenCriterionNet(
            module,
            criterion=self.loss_,
            optimizer=self.optimizer,
            lr=self.lr_,
            max_epochs=self.max_epochs_,
            batch_size=self.batch_size,
            train_split=self.train_split,
            callbacks=copy.deepcopy(self.callbacks),
            predict_nonlinearity=_softmax,
            verbose=self.verbose,
            device=self.device,
            **extra,
        )
        seed = int(check_random_state(self.random_state).randint(_MAX_SEED))
        with torch.random.fork_rng(devices=_rng_devices(self.device)):
            torch.manual_seed(seed)
            net.initialize()  # skorch's fit is initialize + partial_fit
            _check_module_output(net, X[:2], len(self.classes_))
            self.n_threads_ = self._threads(net, X)
            with torch_threads(self.n_threads_):
                net.partial_fit(X, y_encoded)
        self.net_ = net
        self.module_ = net.module_
        self.history_ = net.history_
        return self

    @fill_doc(predict_proba_sections=PREDICT_PROBA_SECTIONS)
    def predict_proba(self, X):
        """Class probabilities, the softmax of the module's logits.

        {predict_proba_sections}
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float32, allow_nd=True, ensure_2d=False, reset=False)
        X = check_sample_shape(self, X, reset=False)
        # torch's DataLoader draws a seed from the global generator on every pass
        with (
            torch.random.fork_rng(devices=_rng_devices(self.device)),
            torch_threads(self.n_threads_),
        ):
            proba = self.net_.predict_proba(X).astype(np.float64)
        return proba / proba.sum(axis=1, keepdims=True)

    @fill_doc(predict_sections=PREDICT_SECTIONS)
    def predict(self, X):
        """Predicted class labels (from ``classes_``).

        {predict_sections}
        """
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]
