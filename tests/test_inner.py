import numpy as np
import pytest
import torch

import sklearn_mln
from sklearn_mln import ClassicalLoss, MetaLossNetwork
from sklearn_mln._classifier import _nets
from sklearn_mln._classifier._nets import (
    MLP,
    default_module_factory,
    hand_differentiated_form,
    population_forward,
    supports_population,
)
from sklearn_mln._evolution._inner import (
    InnerConfig,
    init_population,
    make_task_batch,
    mln_population_loss,
    score_population,
    score_reference,
    train_population,
)
from sklearn_mln._evolution._parallel import evaluate_population
from sklearn_mln._evolution._tasks import class_indices, draw_seeds, sample_tasks
from sklearn_mln._losses._meta_loss import meta_loss_per_sample
from sklearn_mln.datasets import load_digits_images


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits_images(return_X_y=True)
    return X, y


def _setup(X, y, n_tasks=3, n_shots=5, seed=0, n_ways=None, steps=30):
    rng = np.random.RandomState(seed)
    source, val = np.arange(600), np.arange(600, 1000)
    tasks = sample_tasks(class_indices(y[source], 10), n_tasks, n_shots, n_ways, rng)
    batch = make_task_batch(tasks, draw_seeds(rng, n_tasks), X[source], y[source], y[val])
    n_classes = n_ways or 10
    config = InnerConfig(default_module_factory(X.shape[1:], n_classes), lr=0.1, steps=steps)
    return config, batch, X[val]


def _candidates(n):
    nets = [MetaLossNetwork(random_state=i) for i in range(n)]
    for i, net in enumerate(nets[1:], 1):
        noise = np.random.RandomState(i).normal(0, 0.05, net.n_params)
        net.set_flat_params(net.get_flat_params() + noise)
    return nets


@pytest.mark.parametrize("flat, atol", [(True, 1e-9), (False, 0.02)])
def test_vectorized_path_matches_reference(digits, flat, atol):
    X, y = digits
    X = X.reshape(len(X), -1) if flat else X
    config, batch, X_val = _setup(X, y, n_tasks=2)
    nets = _candidates(3)
    ref_acc, ref_failed = score_reference(nets, config, batch, X_val)
    thetas = np.stack([n.get_flat_params() for n in nets])
    pop_acc, pop_failed = score_population(
        mln_population_loss(thetas, nets[0].spec, batch.n_tasks), 3, config, batch, X_val
    )
    np.testing.assert_array_equal(ref_failed, pop_failed)
    # MLP: identical maths; CNN: float round-off of different kernels can flip a few of 400
    np.testing.assert_allclose(pop_acc, ref_acc, atol=atol)
    assert ref_acc[0].min() > 0.5  # the unperturbed candidate is cross-entropy


def test_classical_loss_broadcasts_over_members(digits):
    X, y = digits
    config, batch, X_val = _setup(X.reshape(len(X), -1), y)
    ce = ClassicalLoss("cross_entropy")
    pop_acc, _ = score_population(ce.per_sample, 1, config, batch, X_val)
    ref_acc, _ = score_reference([ce], config, batch, X_val)
    np.testing.assert_allclose(pop_acc, ref_acc, atol=1e-9)
    # the CE-anchored network starts as exactly CE
    anchored = MetaLossNetwork(random_state=0)
    mln_acc, _ = score_population(anchored.per_sample, 1, config, batch, X_val)
    np.testing.assert_allclose(mln_acc, pop_acc, atol=1e-9)


def test_common_random_numbers(digits):
    """Every candidate sees the same tasks and initial weights: equal losses, equal rows."""
    X, y = digits
    config, batch, X_val = _setup(X.reshape(len(X), -1), y)
    theta = MetaLossNetwork(random_state=0).get_flat_params()
    acc, _ = score_population(
        mln_population_loss(np.stack([theta] * 3), MetaLossNetwork().spec, batch.n_tasks),
        3,
        config,
        batch,
        X_val,
    )
    assert np.array_equal(acc[0], acc[1]) and np.array_equal(acc[0], acc[2])
    assert len(set(acc[0].round(6))) > 1  # tasks differ


def test_non_finite_member_is_isolated(digits):
    X, y = digits
    config, batch, X_val = _setup(X.reshape(len(X), -1), y, n_tasks=2)
    ce = ClassicalLoss("cross_entropy")

    def loss(logits, y_):
        values = ce.per_sample(logits, y_)
        poisoned = torch.zeros_like(values)
        poisoned[2:] = float("nan")  # candidate 1 (members 2, 3) is broken
        return values + poisoned

    acc, failed = score_population(loss, 2, config, batch, X_val)
    assert failed[1].all() and not failed[0].any()
    assert (acc[0] > 0.3).all()


def test_collapsed_classifier_counts_as_failure(digits):
    X, y = digits
    config, batch, X_val = _setup(X.reshape(len(X), -1), y, n_tasks=1)

    def push_to_class_zero(logits, y_):
        return -logits[..., 0]  # always predict class 0

    acc, failed = score_population(push_to_class_zero, 1, config, batch, X_val)
    assert failed.all()
    # the real accuracy of predicting class 0 everywhere: its share of the validation rows
    np.testing.assert_allclose(acc[0, 0], np.mean(batch.y_val[0] == 0))


def test_n_ways_tasks(digits):
    X, y = digits
    config, batch, X_val = _setup(X.reshape(len(X), -1), y, n_ways=3)
    assert batch.y_train.max() == 2 and set(np.unique(batch.y_val)) <= {-1, 0, 1, 2}
    acc, failed = score_population(ClassicalLoss().per_sample, 1, config, batch, X_val)
    assert not failed.any() and acc.mean() > 0.6  # 3-way is easier than 10-way


def test_custom_module_runs_batched_through_vmap(digits):
    X, y = digits
    X = X.reshape(len(X), -1)

    def factory():
        return torch.nn.Sequential(
            torch.nn.Linear(64, 16), torch.nn.Tanh(), torch.nn.Linear(16, 10)
        )

    assert supports_population(factory(), torch.as_tensor(X[:2]))
    config, batch, X_val = _setup(X, y)
    config = InnerConfig(factory, lr=0.1, steps=20)
    ce = ClassicalLoss()
    np.testing.assert_allclose(
        score_population(ce.per_sample, 1, config, batch, X_val)[0],
        score_reference([ce], config, batch, X_val)[0],
        atol=1e-6,
    )


class _BranchesOnInput(torch.nn.Module):
    """Data-dependent control flow on the input, before any parameter touches it."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(64, 10)

    def forward(self, X):
        if bool((X >= 0).all()):
            return self.linear(X)
        return self.linear(X.clamp(min=0))


def test_supports_population_tries_each_members_own_rows(digits):
    X = torch.as_tensor(digits[0][:2].reshape(2, -1))
    module = _BranchesOnInput()
    params = {k: torch.stack([v.detach()] * 2) for k, v in module.named_parameters()}
    # shared rows: vmap sees an unbatched input, so the branch runs and the form works
    with torch.no_grad():
        shared = population_forward(module, params, X, shared=True)
        torch.testing.assert_close(shared[1], module(X))
        with pytest.raises(RuntimeError):  # each member's own rows: the branch cannot batch
            population_forward(module, params, torch.stack([X, X]), shared=False)
    assert not supports_population(module, X)
    linear = torch.nn.Sequential(torch.nn.Linear(64, 10))
    assert supports_population(linear, X)


def test_train_population_gradient_is_per_member(digits):
    """Training M members together equals training each alone."""
    X, y = digits
    X = torch.as_tensor(X[:40].reshape(40, -1))
    y = torch.as_tensor(y[:40])
    factory = default_module_factory((64,), 10)
    module, params = init_population(factory, [1, 2])
    loss = ClassicalLoss().per_sample
    together, _ = train_population(
        module, params, X.expand(2, -1, -1), y.expand(2, -1), loss, lr=0.1, steps=5, momentum=0.9
    )
    alone, _ = train_population(
        module,
        {k: v[1:] for k, v in params.items()},
        X[None],
        y[None],
        loss,
        lr=0.1,
        steps=5,
        momentum=0.9,
    )
    for name in together:
        torch.testing.assert_close(together[name][1:], alone[name])
    assert isinstance(module, MLP)


@pytest.mark.parametrize("hidden_sizes", [(32,), (16, 8)])
def test_hand_written_mlp_backward_is_autograds(digits, hidden_sizes):
    X, y = digits
    X = torch.as_tensor(X[:60]).reshape(3, 20, 1, 8, 8)  # image rows: flattened on the way
    y = torch.as_tensor(y[:60]).reshape(3, 20)
    module, params = init_population(lambda: MLP(64, 10, hidden_sizes), [0, 1, 2])
    params = {k: v.requires_grad_(True) for k, v in params.items()}
    forward = hand_differentiated_form(module)
    logits, backward = forward(module, params, X)
    expected = population_forward(module, params, X, shared=False)
    torch.testing.assert_close(logits, expected, rtol=0, atol=0)
    d_logits = torch.randn_like(logits)
    grads = backward(d_logits)
    expected_grads = torch.autograd.grad(expected, list(params.values()), d_logits)
    assert list(grads) != list(params)  # the order is the caller's to restore
    for name, want in zip(params, expected_grads):
        torch.testing.assert_close(grads[name], want, rtol=0, atol=0)


@pytest.mark.parametrize("native", [False, True])
def test_train_population_by_hand_trains_as_autograd_does(digits, monkeypatch, native):
    if native:
        pytest.importorskip("numba")
    X, y = digits
    config, batch, _ = _setup(X.reshape(len(X), -1), y, n_tasks=2, steps=15)
    module, params = init_population(config.module_factory, batch.init_seeds)
    nets = _candidates(2)
    thetas = np.stack([n.get_flat_params() for n in nets])
    inputs = (
        torch.as_tensor(batch.X_train).repeat(2, 1, 1),
        torch.as_tensor(batch.y_train).repeat(2, 1),
    )

    def train():
        loss = mln_population_loss(thetas, nets[0].spec, batch.n_tasks)
        return train_population(
            module, {k: v.repeat(2, 1, *[1] * (v.ndim - 2)) for k, v in params.items()},
            *inputs, loss, lr=0.5, steps=15, momentum=0.9,
        )  # fmt: skip

    with sklearn_mln.config_context(native_kernels=native):
        by_hand = train()
        monkeypatch.setattr(_nets, "_HAND_DIFFERENTIATED", {})
        assert hand_differentiated_form(module) is None
        through_autograd = train()
    for name in params:
        torch.testing.assert_close(by_hand[0][name], through_autograd[0][name], rtol=0, atol=0)
    assert torch.equal(by_hand[1], through_autograd[1])


def test_evaluate_population_chunks_agree(digits):
    X, y = digits
    config, batch, X_val = _setup(X.reshape(len(X), -1), y)
    nets = _candidates(4)
    thetas = np.stack([n.get_flat_params() for n in nets])
    one = evaluate_population(thetas, nets[0].spec, config, batch, X_val, n_jobs=1)
    two = evaluate_population(thetas, nets[0].spec, config, batch, X_val, n_jobs=2)
    np.testing.assert_array_equal(one[0], two[0])


def test_inner_loop_leaves_torch_rng_alone(digits):
    X, y = digits
    config, batch, X_val = _setup(X.reshape(len(X), -1), y)
    state = torch.random.get_rng_state()
    score_population(ClassicalLoss().per_sample, 1, config, batch, X_val)
    assert torch.equal(state, torch.random.get_rng_state())


@pytest.mark.parametrize("shape", [(4, 8, 28, 28), (3, 2, 7, 9), (2, 3, 5, 5)])
@pytest.mark.parametrize("values", ["relu", "ties"])
def test_max_pool_matches_torch_values_and_gradients(shape, values):
    """Same values and gradients as ``F.max_pool2d``, ties and odd sizes included."""
    from sklearn_mln._classifier._nets import max_pool_2x2

    gen = torch.Generator().manual_seed(0)
    if values == "relu":
        h = torch.relu(torch.randn(*shape, generator=gen))
    else:  # many exact ties, as on a constant background
        h = torch.randint(0, 2, shape, generator=gen).float()
    h1, h2 = h.clone().requires_grad_(True), h.clone().requires_grad_(True)
    out, ref = max_pool_2x2(h1), torch.nn.functional.max_pool2d(h2, 2)
    assert torch.equal(out, ref)
    upstream = torch.randn(ref.shape, generator=gen)
    (grad,) = torch.autograd.grad(out, h1, upstream)
    (ref_grad,) = torch.autograd.grad(ref, h2, upstream)
    assert torch.equal(grad, ref_grad)
    assert ref_grad.abs().sum() > 0


def test_small_cnn_matches_the_conventional_conv_relu_pool():
    """SmallCNN pools before its ReLU (cheaper); values and weight gradients are unchanged."""
    import torch.nn.functional as F

    from sklearn_mln import SmallCNN

    torch.manual_seed(0)
    net = SmallCNN(1, 10, (28, 28))
    X = torch.randn(6, 1, 28, 28)

    def conventional(X):
        h = X
        for conv in net.convs:
            h = F.max_pool2d(torch.relu(conv(h)), 2)
        return net.fc(h.flatten(1))

    out, ref = net(X), conventional(X)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    grads = torch.autograd.grad(out.square().sum(), list(net.parameters()))
    ref_grads = torch.autograd.grad(ref.square().sum(), list(net.parameters()))
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=0, atol=0)


def test_train_population_tells_the_loss_its_progress(digits):
    X, y = digits
    X = torch.as_tensor(X[:40].reshape(40, -1))
    y = torch.as_tensor(y[:40])
    module, params = init_population(default_module_factory((64,), 10), [1])
    seen, cross_entropy = [], ClassicalLoss().per_sample

    def loss(logits, y):
        return cross_entropy(logits, y)

    loss.set_progress = seen.append
    train_population(module, params, X[None], y[None], loss, lr=0.1, steps=4, momentum=0.9)
    assert seen == [0.0, 0.25, 0.5, 0.75, None]  # and reset after training


def test_progress_input_follows_the_same_schedule_in_both_loops(digits):
    X, y = digits
    config, batch, X_val = _setup(X.reshape(len(X), -1), y, n_tasks=2)
    nets = []
    for i in range(2):
        net = MetaLossNetwork(10, progress_input=True, random_state=i)
        noise = np.random.RandomState(i).normal(0, 0.05, net.n_params)
        nets.append(net.set_flat_params(net.get_flat_params() + noise))
    reference = score_reference(nets, config, batch, X_val)[0]
    thetas = np.stack([n.get_flat_params() for n in nets])
    scheduled = mln_population_loss(thetas, nets[0].spec, batch.n_tasks)
    population = score_population(scheduled, 2, config, batch, X_val)[0]
    np.testing.assert_allclose(population, reference, atol=1e-9)
    assert population.max() > 0.5 and all(n.progress is None for n in nets)

    def unscheduled(logits, y):  # no set_progress: the loss sees its default throughout
        return scheduled(logits, y)

    module, params = init_population(config.module_factory, batch.init_seeds)
    X_train, y_train = torch.as_tensor(batch.X_train), torch.as_tensor(batch.y_train)
    X_train, y_train = X_train.repeat(2, 1, 1), y_train.repeat(2, 1)
    params = {k: v.repeat(2, *[1] * (v.ndim - 1)) for k, v in params.items()}
    trained = {}
    for name, loss in (("scheduled", scheduled), ("constant", unscheduled)):
        scheduled.set_progress(None)
        trained[name], _ = train_population(
            module, params, X_train, y_train, loss, lr=0.1, steps=10, momentum=0.9
        )
    assert any(not torch.equal(trained["scheduled"][k], trained["constant"][k]) for k in params)


def test_tuning_tells_a_meta_loss_its_progress_and_leaves_it_untold(digits):
    from sklearn_mln.benchmark._tuning import Setting, score_settings

    X, y = digits
    config, batch, X_val = _setup(X.reshape(len(X), -1), y, n_tasks=2, steps=5)
    net = MetaLossNetwork(10, progress_input=True, random_state=0)
    seen, per_sample = [], net.per_sample

    def recording(logits, y):
        seen.append(net.progress)
        return per_sample(logits, y)

    net.per_sample = recording
    setting = Setting("mln", (), 0.1, 5)
    score_settings([setting], {("mln", ()): net}, config.module_factory, batch, X_val)
    assert seen == [0.0, 0.2, 0.4, 0.6, 0.8] and net.progress is None


def test_both_loops_tell_a_shots_input_loss_the_tasks_size(digits):
    """The reference loop and the population path tell the loss k (and forget it after),
    so they train the same classifiers; a loss told another k trains others."""
    X, y = digits
    config, batch, X_val = _setup(X.reshape(len(X), -1), y, n_tasks=2, n_shots=3)
    nets = []
    for i in range(2):
        net = MetaLossNetwork(10, shots_input=True, random_state=i)
        noise = np.random.RandomState(i).normal(0, 0.05, net.n_params)
        nets.append(net.set_flat_params(net.get_flat_params() + noise))
    reference = score_reference(nets, config, batch, X_val)[0]
    thetas = np.stack([n.get_flat_params() for n in nets])
    told = mln_population_loss(thetas, nets[0].spec, batch.n_tasks)
    population = score_population(told, 2, config, batch, X_val)[0]
    np.testing.assert_allclose(population, reference, atol=1e-9)
    assert population.max() > 0.3 and all(n.shots is None for n in nets)  # chance: 0.1

    seen, set_shots = [], told.set_shots
    told.set_shots = lambda shots: (seen.append(shots), set_shots(shots))
    module, params = init_population(config.module_factory, batch.init_seeds)
    X_train, y_train = torch.as_tensor(batch.X_train), torch.as_tensor(batch.y_train)
    X_train, y_train = X_train.repeat(2, 1, 1), y_train.repeat(2, 1)
    params = {k: v.repeat(2, *[1] * (v.ndim - 1)) for k, v in params.items()}
    trained = {}
    theta = torch.as_tensor(thetas).repeat_interleave(2, 0)

    def believes_fifty(logits, y):
        return meta_loss_per_sample(theta, logits, y, nets[0].spec, shots=50)

    for name, loss in (("told", told), ("fifty", believes_fifty)):
        trained[name], _ = train_population(
            module, params, X_train, y_train, loss, lr=0.1, steps=10, momentum=0.9
        )
    assert seen == [3.0, None]  # k of the tasks, then forgotten
    assert any(not torch.equal(trained["told"][k], trained["fifty"][k]) for k in params)
