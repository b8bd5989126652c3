"""``python -m sklearn_mln``: options generated from the estimator, user data, resume, errors.

Every run here is tiny (conftest's ``TINY_EVOLVE_ARGV``): a few seconds each.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _helpers import SLOWED_EVOLUTION, generations_in, sigkill_after_generations

import sklearn_mln
from sklearn_mln import MLNEvolver, load_meta_loss
from sklearn_mln._classifier._nets import ARCHITECTURES
from sklearn_mln._cli._main import main
from sklearn_mln._cli._options import options_for, parameter_docs, plain, show, values
from sklearn_mln._cli._parser import (
    BENCHMARK_OPTIONS,
    BENCHMARK_PROVIDED,
    EVOLVE_OPTIONS,
    EVOLVER_PROVIDED,
    PRESETS,
    build_parser,
)
from sklearn_mln._losses._meta_loss import ACTIVATIONS, INPUTS, STRUCTURES
from sklearn_mln.benchmark import CLASSICAL_GRIDS, small_data_benchmark

pytestmark = [pytest.mark.usefixtures("no_data_env"), pytest.mark.timeout(120)]
JOINT_B = (
    Path(__file__).resolve().parents[1] / "benchmarks/results/evolution/fmnist-cnn-ls-joint-B.mln"
)
ROOT = Path(sklearn_mln.__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def _evolve_args(argv):
    return build_parser().parse_args(["evolve", *argv])


def _actions(parser_args=("evolve",)):
    sub = build_parser()._subparsers._group_actions[0].choices[parser_args[0]]
    return {action.dest: action for action in sub._actions}


# --------------------------------------------------------------------------- generated options


def test_every_evolver_parameter_is_an_option_with_its_default_and_doc():
    actions = _actions()
    docs = parameter_docs(MLNEvolver)
    flags = {flag for action in actions.values() for flag in action.option_strings}
    for name, parameter in inspect.signature(MLNEvolver).parameters.items():
        if name in EVOLVER_PROVIDED:
            assert EVOLVER_PROVIDED[name] in flags
            continue
        action = actions[name]
        assert action.option_strings[0] == "--" + name.replace("_", "-")
        if name in PRESETS:
            assert f"MLNEvolver's default: {show(parameter.default)})" in action.help
        else:
            assert action.default == parameter.default, name
        assert plain(docs[name][1]) in action.help


def test_nothing_of_the_estimator_is_left_out_or_restated():
    _, unsupported = options_for(MLNEvolver, skip=tuple(EVOLVER_PROVIDED))
    assert unsupported == []  # a new parameter without a command-line form must be decided on
    _, unsupported = options_for(small_data_benchmark, skip=tuple(BENCHMARK_PROVIDED))
    assert unsupported == []
    assert set(PRESETS) == {"n_jobs", "inner_lr"}  # the only defaults the CLI sets itself
    args = _evolve_args(["--classifier", "cnn"])
    params = values(args, EVOLVE_OPTIONS)
    defaults = MLNEvolver().get_params()
    assert {k for k in params if params[k] != defaults[k]} == {"n_jobs"}
    assert params["n_jobs"] == -1 and params["inner_lr"] == defaults["inner_lr"]
    assert values(_evolve_args(["--classifier", "mlp"]), EVOLVE_OPTIONS)["inner_lr"] == 0.1
    assert (
        values(_evolve_args(["--classifier", "mlp", "--inner-lr", "0.5"]), EVOLVE_OPTIONS)[
            "inner_lr"
        ]
        == 0.5
    )


def test_choices_come_from_the_library_constants():
    actions = _actions()
    for name, constant in (("structure", STRUCTURES), ("inputs", INPUTS)):
        assert actions[name].metavar == "{" + ",".join(sorted(constant)) + "}"
    assert actions["activation"].metavar == "{" + ",".join(sorted(ACTIVATIONS)) + "}"
    bench = {o.name: o for o in BENCHMARK_OPTIONS}
    assert bench["architectures"].convert.choices == tuple(ARCHITECTURES)
    assert bench["baselines"].convert.choices == tuple(CLASSICAL_GRIDS)


def test_benchmark_options_follow_the_function():
    actions = _actions(("benchmark",))
    for name, parameter in inspect.signature(small_data_benchmark).parameters.items():
        if parameter.default is inspect.Parameter.empty or name in BENCHMARK_PROVIDED:
            continue
        default = actions[name].default
        assert (
            tuple(default)
            if isinstance(default, (list, tuple))
            else default
            == (
                tuple(parameter.default)
                if isinstance(parameter.default, (list, tuple))
                else parameter.default
            )
        )


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--anchor", "none"], {"anchor": None}),
        (["--n-ways", "none", "--max-time", "2.5"], {"n_ways": None, "max_time": 2.5}),
        (["--diagonal", "true", "--vectorized", "false"], {"diagonal": True, "vectorized": False}),
        (["--hidden-sizes", "5", "3"], {"hidden_sizes": (5, 3)}),
        (["--validation-size", "0.3", "--inner-momentum", "0"], {"validation_size": 0.3}),
        (["--device", "cuda", "--checkpoint-path", "run.ckpt"], {"checkpoint_path": "run.ckpt"}),
    ],
)
def test_values_are_converted(argv, expected):
    params = values(_evolve_args(argv), EVOLVE_OPTIONS)
    assert {k: params[k] for k in expected} == expected


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--popsize", "1"], "range [2, inf)"),
        (["--structure", "tree"], "one of joint, per_class"),
        (["--validation-size", "1"], "range (0.0, 1.0)"),
        (["--inner-lr", "fast"], "a float"),
        (["--seed", "-1"], "range [0, inf)"),
        (["--threads", "0"], "range [1, inf)"),
        (["--dataset", "cifar10", "--data", "x.npz"], "not allowed with"),
    ],
)
def test_bad_values_are_refused_when_parsing(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        _evolve_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_recorded_commands_still_parse():
    """A command the command line recorded in a committed loss (loss B's, with old option
    names: --tasks, --generations, --seed) means the same today."""
    recorded = load_meta_loss(JOINT_B).metadata
    argv = shlex.split(recorded["command"])[4:]  # after "python -m sklearn_mln evolve"
    args = _evolve_args(argv)
    params = values(args, EVOLVE_OPTIONS)
    for name in ("n_tasks", "popsize", "sigma0", "init", "n_shots", "structure", "max_time"):
        assert params[name] == recorded["params"][name], name


def test_parameter_docs_groups_and_references():
    class Documented:
        """Title.

        Parameters
        ----------
        a, b : int
            Shared by a and b, 50 %.
        c
            Depth; see :class:`Referred`.
        d : float, default=1.0

        Returns
        -------
        e : int
            Not a parameter.
        """

    docs = parameter_docs(Documented)
    assert docs["a"] == docs["b"] == ("int", "Shared by a and b, 50 %.")
    assert docs["c"] == ("", "Depth; see :class:`Referred`.")
    assert docs["d"] == ("float, default=1.0", "")
    assert "e" not in docs
    assert plain("``x`` of :class:`~sklearn_mln.MLNEvolver`, 5 %") == "x of MLNEvolver, 5 %%"
    # MLNEvolver's structure entry refers to MetaLossNetwork, whose own entry is used
    assert "one small net applied to each" in parameter_docs(MLNEvolver)["structure"][1]


# --------------------------------------------------------------------------- runs


def test_evolve_builds_the_requested_network(tmp_path, capsys, tiny_evolve_argv):
    out = tmp_path / "joint.mln"
    argv = ["evolve", *tiny_evolve_argv, "--structure", "joint", "--inputs", "probs"]
    argv += ["--hidden-sizes", "5", "3"]
    free = values(_evolve_args([*argv[1:], "--anchor", "none", "--init", "random"]), EVOLVE_OPTIONS)
    assert (free["anchor"], free["init"]) == (None, "random")  # (a free random start collapses
    # to one class in a run this short: the command then exits with an error, tested below)
    assert main([*argv, "--threads", "1", "--output", str(out)]) == 0
    loss = load_meta_loss(out)
    spec = loss.spec
    assert (spec.structure, spec.inputs, spec.anchor) == ("joint", "probs", "cross_entropy")
    assert spec.hidden_sizes == (5, 3)
    assert "Saved the evolved loss" in capsys.readouterr().out
    # provenance: what the estimator cannot know, written by the program
    meta = loss.metadata
    assert meta["command"].startswith("python -m sklearn_mln evolve --n-shots 3")
    assert meta["dataset"] == "digits" and meta["seed"] == 0 and meta["torch_threads"] == 1
    assert {"commit", "versions", "cores", "date", "wall_seconds"} <= set(meta)
    assert meta["params"]["validation_size"] == 0.5


def test_threads_apply_to_the_command_only(tmp_path, tiny_evolve_argv):
    before = torch.get_num_threads()
    argv = ["evolve", *tiny_evolve_argv, "--n-generations", "1", "--threads", "1"]
    assert main([*argv, "--output", str(tmp_path / "x.mln")]) == 0
    assert torch.get_num_threads() == before


def _run(argv, capsys=None) -> str:
    """Run a command; return its held-out table (the output without timings)."""
    if capsys is None:
        with contextlib.redirect_stdout(io.StringIO()) as out:
            assert main(argv) == 0
        out = out.getvalue()
    else:
        assert main(argv) == 0
        out = capsys.readouterr().out
    return out.split("\nHeld-out comparison")[1].split("\nSaved")[0]


@pytest.fixture(scope="module")
def resumable(tiny_evolve_argv):
    """The tiny run that the resume tests interrupt."""
    return ["evolve", *tiny_evolve_argv, "--n-generations", "4"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory, resumable):
    """That run uninterrupted: its output file and held-out table."""
    out = tmp_path_factory.mktemp("straight") / "straight.mln"
    return out, _run([*resumable, "--output", str(out)])


def _same_result(a: Path, b: Path) -> None:
    la, lb = load_meta_loss(a), load_meta_loss(b)
    np.testing.assert_array_equal(la.get_flat_params(), lb.get_flat_params())
    for key in ("generations", "reevaluated_fitness", "stop_reason"):
        assert la.metadata[key] == lb.metadata[key], key


def test_resume_after_max_time_gives_the_uninterrupted_result(
    tmp_path, capsys, resumable, straight
):
    ckpt = tmp_path / "run.ckpt"
    first = [*resumable, "--checkpoint-path", str(ckpt), "--output", str(tmp_path / "first.mln")]
    _run([*first, "--max-time", "1e-9"], capsys)  # stops after one generation
    assert load_meta_loss(tmp_path / "first.mln").metadata["generations"] == 1
    resumed = _run([*first[:-1], str(tmp_path / "resumed.mln")], capsys)
    _same_result(straight[0], tmp_path / "resumed.mln")
    assert resumed == straight[1]


_CHILD = (
    SLOWED_EVOLUTION
    + """
from sklearn_mln._cli._main import main
main(sys.argv[1:])
"""
)


def test_killed_run_resumes_from_checkpoint_path(tmp_path, capsys, resumable, straight):
    ckpt, killed = tmp_path / "run.ckpt", tmp_path / "killed.mln"
    argv = [*resumable, "--checkpoint-path", str(ckpt), "--output", str(killed)]
    status = sigkill_after_generations([sys.executable, "-c", _CHILD, *argv], ENV, ckpt, 1)
    assert status == -signal.SIGKILL and not killed.exists()
    assert 1 <= generations_in(ckpt) < 4
    resumed = _run(argv, capsys)
    _same_result(straight[0], killed)
    assert resumed == straight[1]


# --------------------------------------------------------------------------- --data


def _write_pngs(folder: Path, X: np.ndarray, y: np.ndarray, names=("zero", "one", "two")):
    from PIL import Image

    for i, (image, label) in enumerate(zip(X, y)):
        (folder / names[label]).mkdir(parents=True, exist_ok=True)
        pixels = (image[0] * 255).round().astype(np.uint8)
        Image.fromarray(pixels).save(folder / names[label] / f"{i:03d}.png")


@pytest.fixture(scope="module")
def three_digits(digits):
    """60 digits of classes 0, 1, 2 (20 each): a small user data set."""
    X, y = digits
    rows = np.concatenate([np.flatnonzero(y == c)[:20] for c in range(3)])
    return X[rows], y[rows]


def _evolve_on(data, out, tiny_evolve_argv, *extra):
    argv = ["evolve", "--data", str(data), *tiny_evolve_argv, "--n-generations", "1"]
    return main([*argv, *extra, "--output", str(out)])


def test_evolve_on_a_users_npz(tmp_path, three_digits, capsys, tiny_evolve_argv):
    X, y = three_digits
    np.savez(tmp_path / "mine.npz", X=X.reshape(len(X), -1), y=y)
    assert _evolve_on(tmp_path / "mine.npz", tmp_path / "x.mln", tiny_evolve_argv) == 0
    out = capsys.readouterr().out
    assert "Evolving a meta-loss on mine: pool 30 samples" in out and ", mlp," in out
    meta = load_meta_loss(tmp_path / "x.mln").metadata
    assert meta["dataset"] == str((tmp_path / "mine.npz").resolve())
    assert meta["classes"] == ["0", "1", "2"] and meta["n_samples"] == 30
    assert meta["data"] == (
        "mine: stratified 50 / 50 split, seed 0; pool 30, held-out 30; features standardized "
        "with the pool's statistics"  # flat features: scaled by default
    )


def test_evolve_on_a_users_csv(tmp_path, three_digits, tiny_evolve_argv):
    X, y = three_digits
    names = np.array(["zero", "one", "two"])[y]
    lines = ["label," + ",".join(f"px{i}" for i in range(64))]
    lines += [f"{n}," + ",".join(f"{v:g}" for v in row) for n, row in zip(names, X.reshape(60, -1))]
    (tmp_path / "mine.csv").write_text("\n".join(lines) + "\n")
    assert _evolve_on(tmp_path / "mine.csv", tmp_path / "x.mln", tiny_evolve_argv) == 0
    meta = load_meta_loss(tmp_path / "x.mln").metadata
    assert meta["classes"] == ["one", "two", "zero"]


def test_evolve_on_a_folder_of_images(tmp_path, three_digits, capsys, tiny_evolve_argv):
    pytest.importorskip("PIL")
    _write_pngs(tmp_path / "images", *three_digits)
    assert _evolve_on(tmp_path / "images", tmp_path / "x.mln", tiny_evolve_argv) == 0
    assert "pool 30 images, 3-shot tasks, cnn," in capsys.readouterr().out
    meta = load_meta_loss(tmp_path / "x.mln").metadata
    assert meta["classes"] == ["one", "two", "zero"]
    assert meta["params"]["inner_lr"] == MLNEvolver().inner_lr  # the cnn: no mlp preset


def _bad_files(tmp: Path) -> dict[str, tuple[Path, str]]:
    """name -> (path, expected part of the error)."""
    X, y = np.random.default_rng(0).random((20, 4)), np.repeat([0, 1], 10)
    cases = {"missing": (tmp / "nope.npz", "no such file")}
    (tmp / "data.txt").write_text("1,2\n")
    cases["suffix"] = (tmp / "data.txt", "unknown format '.txt'")
    np.savez(tmp / "no_y.npz", X=X)
    cases["no y"] = (tmp / "no_y.npz", "needs arrays 'X' and 'y'")
    np.savez(tmp / "objects.npz", X=np.array([{"a": 1}] * 20, dtype=object), y=y)
    cases["objects"] = (tmp / "objects.npz", "plain numeric or string arrays")
    (tmp / "fake.npz").write_bytes(b"not a zip")
    cases["not a zip"] = (tmp / "fake.npz", "not a .npz archive")
    np.savez(tmp / "one_class.npz", X=X, y=np.zeros(20))
    cases["one class"] = (tmp / "one_class.npz", "only one class")
    np.savez(tmp / "lonely.npz", X=X, y=np.r_[np.zeros(19), 1])
    cases["one sample"] = (tmp / "lonely.npz", "class 1 has 1 sample")
    np.savez(tmp / "nan.npz", X=np.full((20, 4), np.nan), y=y)
    cases["nan"] = (tmp / "nan.npz", "NaN")
    np.savez(tmp / "short_y.npz", X=X, y=y[:5])
    cases["lengths"] = (tmp / "short_y.npz", "one label per sample")
    (tmp / "text.csv").write_text("a,b,label\n1,x,0\n2,3,1\n")
    cases["text feature"] = (tmp / "text.csv", "line 2, column 'b': 'x' is not a number")
    (tmp / "ragged.csv").write_text("1,2,0\n1,0\n")
    cases["ragged"] = (tmp / "ragged.csv", "line 2 has 2 fields, expected 3")
    (tmp / "empty.csv").write_text("\n")
    cases["empty"] = (tmp / "empty.csv", "empty")
    (tmp / "flat").mkdir()
    cases["no classes"] = (tmp / "flat", "no class subfolders")
    return cases


def test_bad_files_stop_with_one_line_and_write_nothing(tmp_path, capsys, tiny_evolve_argv):
    data = tmp_path / "data"
    data.mkdir()
    ckpt = str(tmp_path / "run.ckpt")
    for name, (path, expected) in _bad_files(data).items():
        before = set(tmp_path.rglob("*"))
        with pytest.raises(SystemExit) as exc:
            _evolve_on(path, tmp_path / "x.mln", tiny_evolve_argv, "--checkpoint-path", ckpt)
        message = exc.value.code
        assert isinstance(message, str) and message.startswith("error: "), name
        assert expected in message and "\n" not in message, (name, message)
        assert set(tmp_path.rglob("*")) == before, name  # nothing written


def test_bad_images_and_missing_pillow(tmp_path, three_digits, monkeypatch, tiny_evolve_argv):
    pytest.importorskip("PIL")
    from PIL import Image

    _write_pngs(tmp_path / "images", *three_digits)
    Image.new("L", (9, 9)).save(tmp_path / "images" / "one" / "big.png")
    with pytest.raises(SystemExit, match=r"big.png: 9x9 pixels, but .* is 8x8"):
        _evolve_on(tmp_path / "images", tmp_path / "x.mln", tiny_evolve_argv)
    (tmp_path / "images" / "one" / "big.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(SystemExit, match="big.png: not a readable image"):
        _evolve_on(tmp_path / "images", tmp_path / "x.mln", tiny_evolve_argv)
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(SystemExit, match=r"needs Pillow: pip install \"sklearn-mln\[images\]\""):
        _evolve_on(tmp_path / "images", tmp_path / "x.mln", tiny_evolve_argv)
    assert not (tmp_path / "x.mln").exists()


def test_too_few_samples_per_class_for_the_shots(tmp_path, three_digits, tiny_evolve_argv):
    X, y = three_digits
    np.savez(tmp_path / "mine.npz", X=X.reshape(60, -1), y=y)
    with pytest.raises(SystemExit, match=r"has 10 samples in the pool; 12-shot tasks need"):
        _evolve_on(tmp_path / "mine.npz", tmp_path / "x.mln", tiny_evolve_argv, "--n-shots", "12")
    with pytest.raises(SystemExit, match="--output .*: its folder does not exist"):
        _evolve_on(tmp_path / "mine.npz", tmp_path / "no" / "x.mln", tiny_evolve_argv)
    with pytest.raises(SystemExit, match="the cnn classifier needs images"):
        _evolve_on(
            tmp_path / "mine.npz", tmp_path / "x.mln", tiny_evolve_argv, "--classifier", "cnn"
        )
    assert list(tmp_path.iterdir()) == [tmp_path / "mine.npz"]


def test_a_bad_file_from_the_shell_prints_no_traceback(tmp_path):
    (tmp_path / "bad.csv").write_text("a,b,label\n1,x,0\n2,3,1\n")
    done = subprocess.run(
        [sys.executable, "-m", "sklearn_mln", "evolve", "--data", "bad.csv"],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == (
        "error: bad.csv: line 2, column 'b': 'x' is not a number (features must be numeric).\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]


def test_evaluate_a_saved_loss_on_the_same_held_out_half(
    tmp_path, three_digits, capsys, tiny_evolve_argv
):
    X, y = three_digits
    np.savez(tmp_path / "mine.npz", X=X.reshape(60, -1), y=y)
    out = tmp_path / "x.mln"
    assert _evolve_on(tmp_path / "mine.npz", out, tiny_evolve_argv) == 0
    capsys.readouterr()
    argv = ["evaluate", str(out), "--data", str(tmp_path / "mine.npz"), "--n-shots", "2"]
    assert main([*argv, "--inner-steps", "5", "--eval-tasks", "2"]) == 0
    table = capsys.readouterr().out
    for name in ("cross_entropy", "mse", "label_smoothing", "focal", str(out)):
        assert name in table


def test_architecture_page_matches_the_package():
    """docs/architecture.rst is kept true: every module and wing of the package has its row,
    and every row names a module or wing that exists."""
    import re

    page = (ROOT / "docs" / "architecture.rst").read_text()
    package = Path(sklearn_mln.__file__).parent
    modules = set()
    for path in package.rglob("*.py"):
        parts = path.relative_to(package).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts:
            modules.add(".".join(parts))
    rows = set(re.findall(r"^   \* - ``([\w.]+)``", page, flags=re.M))
    assert modules - rows == set(), (
        f"docs/architecture.rst does not say what {sorted(modules - rows)} own"
    )
    assert rows - modules == set(), (
        f"docs/architecture.rst names {sorted(rows - modules)}, not in the package"
    )


def _wine_csv(path: Path) -> Path:
    from sklearn.datasets import load_wine

    X, y = load_wine(return_X_y=True)  # raw: proline ~1000, hue ~1
    header = ",".join([f"f{i}" for i in range(X.shape[1])] + ["label"])
    np.savetxt(path, np.c_[X, y], delimiter=",", header=header, comments="", fmt="%g")
    return path


def test_raw_flat_features_are_standardized_and_a_run_that_fails_says_why(
    tmp_path, capsys, tiny_evolve_argv
):
    data = _wine_csv(tmp_path / "wine.csv")
    scaled, raw = tmp_path / "scaled.mln", tmp_path / "raw.mln"
    argv = ["evolve", "--data", str(data), *tiny_evolve_argv]
    assert main([*argv, "--output", str(scaled)]) == 0
    assert load_meta_loss(scaled).metadata["reevaluated_fitness"] > 0.5
    assert "standardized" in load_meta_loss(scaled).metadata["data"]
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--no-standardize", "--output", str(raw)])
    message = str(exc.value)
    assert message.startswith("error: every candidate loss failed") and "scales" in message
    assert not raw.exists()
    assert "Saved" not in capsys.readouterr().out.split("wine")[-1]


def test_a_run_settings_file_is_read_with_at(tmp_path):
    settings = tmp_path / "run.txt"
    settings.write_text("--n-shots\n3\n--popsize\n6\n--structure\njoint\n")
    args = build_parser().parse_args(["evolve", f"@{settings}", "--popsize", "8"])
    params = values(args, EVOLVE_OPTIONS)
    assert (params["n_shots"], params["structure"], params["popsize"]) == (3, "joint", 8)
