"""The small-data benchmark (sklearn_mln.benchmark), on digits with tiny settings."""

import json

import numpy as np
import pytest
import torch

from sklearn_mln import ClassicalLoss, MetaLossNetwork
from sklearn_mln._classifier._nets import architecture_factory
from sklearn_mln._evolution._inner import (
    InnerConfig,
    score_population,
    score_population_at_steps,
)
from sklearn_mln._utils._provenance import REQUIRED_KEYS
from sklearn_mln.benchmark import (
    CLASSICAL_GRIDS,
    BenchmarkResult,
    benchmark_markdown,
    run_benchmark,
    shared_tasks,
    small_data_benchmark,
    write_benchmark_report,
)
from sklearn_mln.benchmark._tuning import Setting, score_settings, tune
from sklearn_mln.datasets import load_digits_images


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: tiny ops on a machine busy with other jobs are far faster so."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def splits():
    X, y = load_digits_images(return_X_y=True)
    order = np.random.RandomState(0).permutation(len(y))
    return X[order[:900]], y[order[:900]], X[order[900:]], y[order[900:]]


@pytest.fixture(scope="module")
def tasks(splits):
    X_pool, y_pool, _, _ = splits
    return shared_tasks(X_pool, y_pool, 2, 3, np.random.RandomState(1))


TINY = dict(ks=[2], n_tasks=3, n_tuning_tasks=2, grid_lr=[0.1, 0.3], grid_steps=[5, 10])


def test_one_run_scores_every_step_count_as_separate_runs_would(splits, tasks):
    X_pool = splits[0]
    factory = architecture_factory("mlp", X_pool.shape[1:], 10)
    loss = ClassicalLoss("cross_entropy").per_sample
    config = InnerConfig(factory, lr=0.3)
    together = score_population_at_steps(loss, 1, config, tasks, X_pool, [3, 8, 5])
    assert list(together) == [3, 8, 5]
    for steps in (3, 5, 8):
        alone = score_population(loss, 1, InnerConfig(factory, lr=0.3, steps=steps), tasks, X_pool)
        np.testing.assert_array_equal(together[steps][0], alone[0])
        np.testing.assert_array_equal(together[steps][1], alone[1])
    assert not np.array_equal(together[3][0], together[8][0])  # training did go on


def test_settings_trained_together_score_as_each_alone(splits, tasks):
    X_pool = splits[0]
    factory = architecture_factory("mlp", X_pool.shape[1:], 10)
    modules = {
        ("label_smoothing", (("smoothing", 0.5),)): ClassicalLoss("label_smoothing", smoothing=0.5),
        ("mse", ()): ClassicalLoss("mse"),
    }
    settings = [Setting(name, params, 0.3, 10) for name, params in modules]
    together = score_settings(settings, modules, factory, tasks, X_pool)
    for s in settings:
        alone = score_settings([s], modules, factory, tasks, X_pool)
        np.testing.assert_allclose(together.accuracy[s], alone.accuracy[s], atol=0.01)
    assert set(together.seconds) == {"label_smoothing", "mse"}


def test_each_loss_is_tuned_over_its_own_hyperparameters(splits, tasks):
    X_pool = splits[0]
    factory = architecture_factory("mlp", X_pool.shape[1:], 10)
    families = {"label_smoothing": {"smoothing": (0.1, 0.9)}, "cross_entropy": {}}
    modules = {
        ("label_smoothing", (("smoothing", e),)): ClassicalLoss("label_smoothing", smoothing=e)
        for e in (0.1, 0.9)
    } | {("cross_entropy", ()): ClassicalLoss("cross_entropy")}
    picks, scores, _ = tune(
        families, modules, factory, tasks, X_pool, grid_lr=[0.1, 0.3, 1.0], grid_steps=[5, 10]
    )
    ls_settings = [s for s in scores.accuracy if s.loss == "label_smoothing"]
    assert {dict(s.params)["smoothing"] for s in ls_settings} == {0.1, 0.9}
    for name, pick in picks.items():
        own = [s for s in scores.accuracy if s.loss == name]
        assert pick["score"] == max(scores.accuracy[s].mean() for s in own)
        assert pick["setting"] in own


def test_lr_grid_is_extended_while_the_pick_is_on_its_edge(splits, tasks):
    X_pool = splits[0]
    factory = architecture_factory("mlp", X_pool.shape[1:], 10)
    modules = {("cross_entropy", ()): ClassicalLoss("cross_entropy")}
    # far too small a step: every extension moves up, by the grid's own ratio
    picks, _, _ = tune(
        {"cross_entropy": {}}, modules, factory, tasks, X_pool,
        grid_lr=[0.003, 0.006], grid_steps=[10], max_lr_extensions=2,
    )  # fmt: skip
    pick = picks["cross_entropy"]
    assert pick["lr_grid"] == pytest.approx([0.003, 0.006, 0.012, 0.024])
    assert pick["setting"].lr == pytest.approx(0.024)
    assert pick["at_edge"] == ["lr"]  # still on the edge after the last extension: reported
    # a grid that brackets the optimum is not extended
    picks, _, _ = tune(
        {"cross_entropy": {}}, modules, factory, tasks, X_pool,
        grid_lr=[1e-4, 0.3, 1000.0], grid_steps=[10], max_lr_extensions=2,
    )  # fmt: skip
    assert picks["cross_entropy"]["lr_grid"] == [1e-4, 0.3, 1000.0]
    assert picks["cross_entropy"]["setting"].lr == 0.3


def test_tuning_never_sees_the_test_split_and_losses_are_paired(splits):
    X_pool, y_pool, X_rest, y_rest = splits
    losses = {"ce_again": ClassicalLoss("cross_entropy")}
    kwargs = dict(TINY, baselines=["cross_entropy", "mse"], architectures=["mlp", "cnn"])
    a = small_data_benchmark(X_pool, y_pool, X_rest[:450], y_rest[:450], losses, **kwargs)
    b = small_data_benchmark(X_pool, y_pool, X_rest[450:], y_rest[450:], losses, **kwargs)
    for row_a, row_b in zip(a.rows, b.rows):
        assert row_a.baseline == row_b.baseline
        for name in ("cross_entropy", "mse", "ce_again"):
            ra, rb = row_a.losses[name], row_b.losses[name]
            assert ra.tuning_grid == rb.tuning_grid
            assert (ra.lr, ra.steps) == (rb.lr, rb.steps)
        assert row_a.losses["mse"].test_accuracy != row_b.losses["mse"].test_accuracy
        ce, again = row_a.losses["cross_entropy"], row_a.losses["ce_again"]
        assert again.test_accuracy == ce.test_accuracy  # same tasks, same initial weights
        assert again.kind == "learned" and ce.kind == "classical"


def test_report_has_provenance_summary_and_one_table_per_row(splits, tmp_path):
    X_pool, y_pool, X_test, y_test = splits
    mln = MetaLossNetwork.from_label_smoothing(10, 0.5, random_state=0)
    result = small_data_benchmark(
        X_pool, y_pool, X_test, y_test, {"ls_mln": mln}, architectures=["mlp"],
        baselines=["label_smoothing", "focal"], **TINY,
    )  # fmt: skip
    row = result.rows[0]
    assert row.baseline == max(
        ("label_smoothing", "focal"), key=lambda n: row.losses[n].tuning_score
    )
    ls_grid = row.losses["label_smoothing"].tuning_grid
    assert len(ls_grid) >= len(CLASSICAL_GRIDS["label_smoothing"]["smoothing"]) * 2 * 2
    assert set(REQUIRED_KEYS) <= set(result.provenance)
    assert result.provenance["seed"] == 0
    paths = write_benchmark_report(result, tmp_path / "out")
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        "results.json", "results.md", "accuracy_vs_k.png"
    }  # fmt: skip
    assert paths["plot"].read_bytes().startswith(b"\x89PNG")
    assert json.loads(paths["json"].read_text())["settings"] == result.settings.to_dict()
    assert BenchmarkResult.load(paths["json"]) == result
    markdown = paths["markdown"].read_text()
    assert markdown == benchmark_markdown(result)
    assert "## Summary" in markdown and "## mlp, k = 2" in markdown
    assert f"commit: {result.provenance['commit']}"[:15] in markdown


def test_bad_arguments_are_refused_before_any_training(splits):
    X_pool, y_pool, X_test, y_test = splits
    with pytest.raises(ValueError, match="k=500"):
        small_data_benchmark(X_pool, y_pool, X_test, y_test, ks=[500])
    with pytest.raises(ValueError, match="Unknown baselines"):
        small_data_benchmark(X_pool, y_pool, X_test, y_test, baselines=["hinge"], ks=[1])
    with pytest.raises(ValueError, match="at least one classical"):
        small_data_benchmark(X_pool, y_pool, X_test, y_test, baselines=[], ks=[1])
    with pytest.raises(ValueError, match="taken by classical"):
        small_data_benchmark(X_pool, y_pool, X_test, y_test, {"mse": ClassicalLoss("mse")}, ks=[1])


def test_screening_keeps_the_best_settings_and_picks_on_all_tasks(splits):
    X_pool, y_pool = splits[:2]
    batch = shared_tasks(X_pool, y_pool, 2, 5, np.random.RandomState(2))
    factory = architecture_factory("mlp", X_pool.shape[1:], 10)
    values = (0.1, 0.5, 0.9)
    modules = {
        ("label_smoothing", (("smoothing", e),)): ClassicalLoss("label_smoothing", smoothing=e)
        for e in values
    }
    picks, screening, final = tune(
        {"label_smoothing": {"smoothing": values}}, modules, factory, batch, X_pool,
        grid_lr=[0.1, 0.3, 1.0], grid_steps=[5, 10], n_screening_tasks=2, n_finalists=2,
        max_lr_extensions=0,
    )  # fmt: skip
    assert len(screening.accuracy) == 3 * 3 * 2  # every setting screened...
    assert all(len(a) == 2 for a in screening.accuracy.values())  # ...on 2 tasks
    finalist_pairs = {(s.params, s.lr) for s in final.accuracy}
    assert len(finalist_pairs) == 2 and len(final.accuracy) == 2 * 2  # 2 pairs x 2 step counts
    assert all(len(a) == 5 for a in final.accuracy.values())  # finalists run on all tasks
    ranked = sorted(screening.accuracy, key=lambda s: -screening.accuracy[s].mean())
    assert (ranked[0].params, ranked[0].lr) in finalist_pairs
    pick = picks["label_smoothing"]
    assert pick["score"] == max(a.mean() for a in final.accuracy.values())
    # the first tasks are shared: a finalist's first scores are its screening scores
    s = pick["setting"]
    np.testing.assert_array_equal(final.accuracy[s][:2], screening.accuracy[s])


def test_a_long_run_reports_after_every_row(splits, tmp_path):
    X_pool, y_pool, X_test, y_test = splits
    seen = []

    def rows(partial):
        seen.append([(row.architecture, row.k) for row in partial.rows])

    result = small_data_benchmark(
        X_pool, y_pool, X_test, y_test, baselines=["cross_entropy"], architectures=["mlp"],
        on_row=rows,
        **{**TINY, "ks": [2, 1]},
    )  # fmt: skip
    assert seen == [[("mlp", 2)], [("mlp", 2), ("mlp", 1)]]
    assert len(result.rows) == 2
    out = tmp_path / "out"
    run = run_benchmark(
        "digits", losses=[], output=out, command="python the-command", architectures=["mlp"],
        baselines=["cross_entropy"], pool_size=None, test_size=None, **TINY,
    )  # fmt: skip
    written = BenchmarkResult.load(out / "results.json")
    assert written.provenance["command"] == "python the-command"
    assert written.rows == run.rows and written.settings.dataset == "digits"
    assert written == run


def test_a_run_may_give_each_baseline_a_smaller_grid(splits):
    X_pool, y_pool, X_test, y_test = splits
    grids = {"label_smoothing": {"smoothing": (0.2, 0.7)}, "cross_entropy": {}}
    result = small_data_benchmark(
        X_pool, y_pool, X_test, y_test, baselines=grids, architectures=["mlp"], **TINY
    )
    assert result.settings.baselines == {
        "label_smoothing": {"smoothing": [0.2, 0.7]}, "cross_entropy": {}
    }  # fmt: skip
    entry = result.rows[0].losses["label_smoothing"]
    assert {p.params["smoothing"] for p in entry.tuning_grid} == {0.2, 0.7}
    with pytest.raises(ValueError, match="must give"):
        small_data_benchmark(
            X_pool, y_pool, X_test, y_test, baselines={"focal": {"alpha": (1.0,)}}, **TINY
        )


def test_a_final_pick_on_the_lr_edge_grows_the_grid_again(splits, monkeypatch):
    """Screening favours an interior lr, all tasks the largest: the grid grows at the end."""
    import sklearn_mln.benchmark._tuning as bench

    X_pool, y_pool = splits[:2]
    batch = shared_tasks(X_pool, y_pool, 1, 6, np.random.RandomState(3))
    screening_seeds = set(batch.init_seeds[:2].tolist())

    def fake_scores(settings, modules, module_factory, batch, X_val, *, scores=None, **kw):
        scores = scores if scores is not None else bench._Scores()
        screening = set(batch.init_seeds.tolist()) <= screening_seeds
        for s in settings:
            value = 1 - abs(np.log10(s.lr / 0.1)) if screening else np.log10(s.lr) + 10
            scores.accuracy[s] = np.full(batch.n_tasks, value)
            scores.failed[s] = np.zeros(batch.n_tasks, dtype=bool)
            scores.seconds[s.loss] = scores.seconds.get(s.loss, 0.0) + 1.0  # 1 s a setting
        calls.append(len(settings))
        return scores

    calls = []

    monkeypatch.setattr(bench, "score_settings", fake_scores)
    picks, screening, final = tune(
        {"cross_entropy": {}}, {}, None, batch, X_pool, grid_lr=[0.01, 0.1, 1.0],
        grid_steps=[5], n_screening_tasks=2, n_finalists=3, max_lr_extensions=2,
    )  # fmt: skip
    pick = picks["cross_entropy"]
    # screening picked 0.1 (interior); on all tasks 1.0 won, an edge: 10 and 100 were added
    assert pick["lr_grid"] == pytest.approx([0.01, 0.1, 1.0, 10.0, 100.0])
    assert pick["setting"].lr == pytest.approx(100.0) and pick["at_edge"] == ["lr"]
    assert all(len(final.accuracy[s]) == 6 for s in final.accuracy)
    # the search cost counts every pass, screening and final: here 1 s per setting per pass
    assert pick["seconds"] == sum(calls)
