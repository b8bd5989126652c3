"""MixtureProblem: several problems scored as one (a loss evolved for many settings)."""

from functools import partial

import numpy as np
import pytest
import torch
from _helpers import load_script

from sklearn_mln import MetaLossNetwork, get_config, load_meta_loss
from sklearn_mln._classifier._nets import default_module_factory
from sklearn_mln._evolution._inner import InnerConfig
from sklearn_mln._evolution._state import EvolutionState, MixtureProblem, Problem, evolve
from sklearn_mln._evolution._strategy import CMAStrategy
from sklearn_mln._losses._meta_loss import MetaLossSpec


def _pool(seed, n=60, shape=(4,)):
    rng = np.random.RandomState(seed)
    return rng.rand(n, *shape).astype(np.float32), np.arange(n) % 3


def _peaked_accuracy(thetas, spec, config, batch, X_val, *, target, fail_beyond=None, **_):
    """A stand-in for evaluate_population: accuracy peaks where theta == target."""
    n_tasks = batch.n_tasks
    accuracy = np.exp(-np.sum((thetas - target) ** 2, axis=1))
    failed = np.zeros((len(thetas), n_tasks), dtype=bool)
    if fail_beyond is not None:
        failed[:] = np.abs(thetas[:, :1]) > fail_beyond
    return np.repeat(accuracy[:, None], n_tasks, axis=1), failed


SPEC = MetaLossSpec(n_classes=3)


def _problem(seed, target, n_shots=2, n_tasks=2, spec=SPEC, **kw):
    X, y = _pool(seed)
    return Problem.from_pool(
        X,
        y,
        3,
        split_seed=seed + 1,
        validation_size=0.5,
        n_shots=n_shots,
        n_ways=None,
        n_tasks=n_tasks,
        reeval_seed=seed + 2,
        n_reeval_tasks=3,
        spec=spec,
        config=InnerConfig(default_module_factory(X.shape[1:], 3)),
        vectorized=True,
        n_jobs=1,
        evaluate=partial(_peaked_accuracy, target=np.asarray(target, dtype=float), **kw),
    )


def test_fitness_is_the_mean_over_components_and_a_failure_anywhere_scores_zero():
    a = _problem(0, [0.0, 0.0])
    b = _problem(10, [1.0, 0.0], fail_beyond=2.5)
    mixture = MixtureProblem((a, b))
    thetas = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, 0.0], [3.0, 0.0]])
    batches = mixture.generation_tasks(7)
    fitness, failed = mixture.fitness(thetas, batches)
    expected = (a.fitness(thetas, batches[0])[0] + b.fitness(thetas, batches[1])[0]) / 2
    np.testing.assert_allclose(fitness[:3], expected[:3])
    assert fitness[3] == 0.0 and failed.tolist() == [False, False, False, True]
    per_component, component_failed = mixture.component_fitness(thetas, batches)
    assert per_component.shape == (2, 4)
    assert component_failed.tolist() == failed.tolist()
    np.testing.assert_allclose(per_component[:, :3].mean(axis=0), fitness[:3])


def test_capped_gain_over_a_reference_stops_one_setting_paying_for_another():
    # A is best at two components and poor at the third; B gains a little at two and
    # loses a little at one: the plain mean prefers A, the capped gain prefers B
    components = (_problem(0, [1.0, 0.0]), _problem(10, [1.0, 0.0]), _problem(20, [0.0, 0.0]))
    reference, a, b = [0.0, 0.0], [1.0, 0.0], [0.2, 0.0]
    thetas = np.array([a, b, reference, [3.0, 0.0]])
    plain = MixtureProblem(components)
    batches = plain.generation_tasks(3)
    plain_fitness, _ = plain.fitness(thetas[:3], batches)
    assert plain_fitness[0] > plain_fitness[1] > plain_fitness[2]

    components = (*components[:2], _problem(20, [0.0, 0.0], fail_beyond=2.5))
    capped = MixtureProblem(components, reference=tuple(reference), gain_cap=0.1)
    fitness, failed = capped.fitness(thetas, batches)
    scores = capped.component_fitness(thetas, batches)[0]
    expected = np.minimum(scores[:, :3] - scores[:, [2]], 0.1).mean(axis=0)
    np.testing.assert_allclose(fitness[:3], expected)
    assert fitness[1] > fitness[2] == 0.0 > fitness[0]
    assert fitness[3] == -1.0 and failed.tolist() == [False, False, False, True]


def test_each_component_draws_its_own_tasks_reproducibly():
    mixture = MixtureProblem((_problem(0, [0, 0], n_shots=1), _problem(0, [0, 0], n_shots=3)))
    first, second = mixture.generation_tasks(5)
    assert first.n_tasks == second.n_tasks == 2
    assert first.y_train.shape[1] != second.y_train.shape[1]  # 1 and 3 shots per class
    again = mixture.generation_tasks(5)
    for old, new in zip((first, second), again):
        np.testing.assert_array_equal(old.init_seeds, new.init_seeds)
        np.testing.assert_array_equal(old.y_train, new.y_train)
    other = mixture.generation_tasks(6)
    assert not np.array_equal(other[0].init_seeds, first.init_seeds)
    reeval = mixture.reevaluation_tasks()
    assert [b.n_tasks for b in reeval] == [3, 3]


def test_components_must_share_the_meta_loss_architecture():
    other = MetaLossSpec(n_classes=3, hidden_sizes=(4,))
    with pytest.raises(ValueError, match="architectures differ"):
        MixtureProblem((_problem(0, [0, 0]), _problem(1, [0, 0], spec=other)))
    with pytest.raises(ValueError, match="at least one"):
        MixtureProblem(())


def test_evolution_on_a_mixture_finds_the_compromise_of_its_components():
    # two components peaked at (0.5, 0) and (-0.5, 0): the mixture's optimum is (0, 0),
    # where neither component alone would lead
    targets = ([0.5, 0.0], [-0.5, 0.0])
    mixture = MixtureProblem(tuple(_problem(i * 10, t) for i, t in enumerate(targets)))
    x0 = np.array([0.8, 0.8])
    strategy = CMAStrategy(x0, 0.3, 8, seed=3)
    rng = np.random.RandomState(0)
    state = EvolutionState(rng.get_state(), rng.get_state(), strategy.state())
    state, reason = evolve(state, strategy, mixture, 40)
    assert reason == "n_generations"
    assert np.linalg.norm(strategy.mean) < 0.15
    start, end = mixture.fitness(np.stack([x0, strategy.mean]), mixture.reevaluation_tasks())[0]
    assert end > start + 0.3


def test_the_mixture_script_saves_a_loss_with_its_components_and_provenance(tmp_path, capsys):
    module = load_script("benchmarks/experiments/mixture_evolution.py")
    output = tmp_path / "mixture.mln"
    argv = ["--datasets", "digits", "--architectures", "mlp", "--shots", "1", "3",
            "--generations", "2", "--popsize", "4", "--eval-tasks", "1", "--n-jobs", "1",
            "--quiet", "--output", str(output)]  # fmt: skip
    assert module.main(argv) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mixture.mln"]
    metadata = load_meta_loss(output).metadata
    assert metadata["components"] == ["digits/mlp/k=1", "digits/mlp/k=3"]
    assert metadata["generations"] == len(metadata["history"]) == 2
    evolved = [v["evolved"] for v in metadata["component_fitness"].values()]
    assert np.mean(evolved) == pytest.approx(metadata["reevaluated_fitness"])
    assert metadata["reevaluated_fitness"] >= metadata["reevaluation"]["fitness"][0]  # start
    assert {"commit", "versions", "command", "seed"} <= set(metadata)
    assert "digits/mlp/k=3" in capsys.readouterr().out


def test_the_mixture_script_scores_capped_gains_over_its_start(tmp_path):
    module = load_script("benchmarks/experiments/mixture_evolution.py")
    output = tmp_path / "capped.mln"
    argv = ["--datasets", "digits", "--architectures", "mlp", "mlp-deep", "--shots", "1",
            "--generations", "2", "--popsize", "4", "--eval-tasks", "1", "--n-jobs", "1",
            "--quiet", "--gain-cap", "0.5", "--output", str(output)]  # fmt: skip
    assert module.main(argv) == 0
    metadata = load_meta_loss(output).metadata
    assert metadata["components"] == ["digits/mlp/k=1", "digits/mlp-deep/k=1"]
    fitness = metadata["reevaluation"]["fitness"]
    assert fitness[0] == 0.0 and metadata["reevaluated_fitness"] == max(fitness)
    gains = [v["evolved"] - v["start"] for v in metadata["component_fitness"].values()]
    assert np.mean(np.minimum(gains, 0.005)) == pytest.approx(metadata["reevaluated_fitness"])


def test_the_mixture_script_evolves_through_the_compiled_kernel_when_asked(tmp_path, monkeypatch):
    pytest.importorskip("numba")
    from sklearn_mln._losses import _native

    calls = []
    loss_forward = _native.loss_forward
    monkeypatch.setattr(_native, "loss_forward", lambda *a: calls.append(1) or loss_forward(*a))
    module = load_script("benchmarks/experiments/mixture_evolution.py")
    output = tmp_path / "native.mln"
    argv = ["--datasets", "digits", "--architectures", "mlp", "--shots", "3",
            "--generations", "2", "--popsize", "4", "--eval-tasks", "1", "--n-jobs", "1",
            "--quiet", "--output", str(output)]  # fmt: skip
    assert module.main(argv) == 0 and not calls
    assert module.main([*argv, "--native-kernels"]) == 0 and calls
    assert load_meta_loss(output).metadata["settings"]["native_kernels"] is True
    assert get_config()["native_kernels"] is False  # the caller's setting is restored


def test_the_mixture_script_resumes_from_its_checkpoint_to_the_same_result(tmp_path):
    module = load_script("benchmarks/experiments/mixture_evolution.py")
    argv = ["--datasets", "digits", "--architectures", "mlp", "--shots", "1", "3",
            "--popsize", "4", "--eval-tasks", "1", "--n-jobs", "1", "--quiet",
            "--shots-input"]  # fmt: skip
    straight, resumed = tmp_path / "straight.mln", tmp_path / "resumed.mln"
    checkpoint = tmp_path / "run.ckpt"
    assert module.main([*argv, "--generations", "4", "--output", str(straight)]) == 0
    for generations in ("2", "4"):  # a first stretch, then the same command continued
        common = ["--checkpoint-path", str(checkpoint), "--output", str(resumed)]
        assert module.main([*argv, "--generations", generations, *common]) == 0
    a, b = load_meta_loss(straight), load_meta_loss(resumed)
    assert a.spec.shots_input
    np.testing.assert_array_equal(a.get_flat_params(), b.get_flat_params())
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in a.metadata["history"]]
    assert strip == [{k: v for k, v in h.items() if k != "seconds"} for h in b.metadata["history"]]
    with pytest.raises(SystemExit, match="holds 4 generations"):
        module.main([*argv, "--generations", "3", *common])


def test_the_mixture_script_trains_each_k_at_its_own_step_size(tmp_path):
    module = load_script("benchmarks/experiments/mixture_evolution.py")
    args = module.argparse.Namespace(
        datasets=["digits"], architectures=["mlp"], shots=[1, 3], cnn_shots=None,
        mlp_lr=[0.01, 0.1], cnn_lr=None, pool_size=300, validation_size=0.5, tasks=1,
        eval_tasks=1, n_jobs=1,
    )  # fmt: skip
    mixture, names = module.build_mixture(args, MetaLossSpec(), np.random.RandomState(0))
    assert names == ["digits/mlp/k=1", "digits/mlp/k=3"]
    assert [c.config.lr for c in mixture.components] == [0.01, 0.1]
    with pytest.raises(SystemExit):
        module.main(["--shots", "1", "3", "--mlp-lr", "0.1", "0.2", "0.3", "--output", "x.mln"])


@pytest.mark.parametrize("true_class_input", [False, True])
def test_fixing_the_shots_input_keeps_the_loss_at_that_k(tmp_path, true_class_input):
    module = load_script("benchmarks/experiments/fix_shots.py")
    told = MetaLossNetwork(
        hidden_sizes=(5, 3), progress_input=True, shots_input=True,
        true_class_input=true_class_input, anchor=None, random_state=0,
    )  # fmt: skip
    theta = np.random.RandomState(0).normal(0, 0.5, told.n_params)
    told.set_flat_params(np.r_[0.0, 0.0, theta[2:]])  # the net's output alone, away from 0
    source, output = tmp_path / "told.mln", tmp_path / "fixed.mln"
    told.save(source)
    assert module.main([str(source), str(output), "--shots", "10"]) == 0
    fixed = load_meta_loss(output)
    assert not fixed.spec.shots_input and fixed.spec.progress_input
    logits, y = (
        torch.randn(12, 10, generator=torch.Generator().manual_seed(0)),
        torch.arange(12) % 10,
    )
    for progress in (0.0, 0.7):
        told.progress = fixed.progress = progress
        told.shots = 10
        expected = told(logits, y)
        torch.testing.assert_close(fixed(logits, y), expected)
        fixed.shots, told.shots = 1, 1  # the fixed loss ignores what it is told
        torch.testing.assert_close(fixed(logits, y), expected)
        assert not torch.allclose(told(logits, y), expected)


def test_the_mixture_script_warm_starts_from_a_loss_file(tmp_path):
    module = load_script("benchmarks/experiments/mixture_evolution.py")
    start = MetaLossNetwork(hidden_sizes=(4,), shots_input=True, random_state=0)
    start.save(tmp_path / "start.mln")
    argv = ["--datasets", "digits", "--architectures", "mlp", "--shots", "1", "3",
            "--generations", "1", "--popsize", "4", "--eval-tasks", "1", "--n-jobs", "1",
            "--quiet", "--init", str(tmp_path / "start.mln"),
            "--output", str(tmp_path / "out.mln")]  # fmt: skip
    assert module.main(argv) == 0
    evolved = load_meta_loss(tmp_path / "out.mln")
    assert evolved.spec == start.spec
    assert evolved.metadata["reevaluation"]["labels"][0] == "start"
