"""Command-line options generated from an estimator or a function: the CLI *is* the estimator.

:func:`options_for` turns the keyword parameters of a class's ``__init__`` (or of a function)
into :mod:`argparse` options: the flag is the parameter's name (``n_shots`` ->
``--n-shots``), the default is the signature's, the help is the numpydoc ``Parameters``
entry, and the type, range and choices come from scikit-learn's ``_parameter_constraints``
(``StrOptions(set(STRUCTURES))`` gives ``--structure {joint,per_class}``,
``Interval(Integral, 2, None)`` refuses ``--popsize 1`` at parse time) or, for a function,
from its type hints. Nothing is restated by hand, so ``evolve --help`` and the docstring
cannot disagree.

Why a small generator rather than jsonargparse: scikit-learn estimators keep plain,
untyped signatures, so jsonargparse's ``add_class_arguments`` would see
``Any`` for every parameter and know neither choices nor ranges; those live in
``_parameter_constraints``, which only scikit-learn's own validation reads. This module
reads them (~250 lines, no new dependency) and keeps argparse's familiar help and errors.
"""

from __future__ import annotations

import argparse
import inspect
import os
import re
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

from sklearn.utils._param_validation import Interval, StrOptions

_SECTION = re.compile(r"^\s*([A-Z][A-Za-z ]+)\n\s*-{3,}\s*$", re.MULTILINE)
_SEE_CLASS = re.compile(r"see :class:`~?([\w.]+)`")
_ROLE = re.compile(r":[a-z]+:`~?(?:[\w.]+\.)?([^`]+)`")
_KIND_NAMES = {int: "an int", float: "a float", str: "a string", bool: "true or false"}


@dataclass(frozen=True)
class Preset:
    """A default the command line sets itself, instead of the estimator's, and why.

    ``when`` (a test on the parsed arguments) limits it to some runs; otherwise the
    estimator's default applies.
    """

    value: Any
    reason: str
    when: Callable[[argparse.Namespace], bool] | None = None


@dataclass(frozen=True)
class Option:
    """One generated option: ``--flag`` for parameter ``name``."""

    name: str
    flags: tuple[str, ...]
    default: Any
    description: str
    convert: Value
    nargs: str | None = None
    metavar: str | None = None


# --------------------------------------------------------------------------- docstrings


def parameter_docs(obj: Any) -> dict[str, tuple[str, str]]:
    """``{name: (type line, description)}`` from the numpydoc ``Parameters`` section.

    ``a, b, c`` entries share their description. A description that says
    ``see :class:`X``` is replaced by ``X``'s own entry for the parameter, if it has one.
    """
    doc = inspect.cleandoc(obj.__doc__ or "")
    sections = list(_SECTION.finditer(doc))
    start = next((m for m in sections if m.group(1).strip() == "Parameters"), None)
    if start is None:
        return {}
    end = next((m.start() for m in sections if m.start() > start.end()), len(doc))
    entries: dict[str, tuple[str, str]] = {}
    names: list[str] = []
    type_line, lines = "", []

    def flush() -> None:
        for name in names:
            entries[name] = (type_line, " ".join(lines))

    for line in doc[start.end() : end].splitlines():
        if line.strip() and not line[0].isspace():
            flush()
            head, _, type_line = line.partition(" : ")
            names, lines = [n.strip() for n in head.split(",")], []
        elif line.strip():
            lines.append(line.strip())
    flush()
    for name, (_, text) in list(entries.items()):
        referred = _SEE_CLASS.search(text)
        if referred:
            other = _resolve(obj, referred.group(1))
            if other is not None and parameter_docs(other).get(name, ("", ""))[1]:
                entries[name] = parameter_docs(other)[name]
    return entries


def _resolve(obj: Any, dotted: str) -> Any:
    import importlib

    namespace = vars(importlib.import_module(obj.__module__))
    return namespace.get(dotted.rsplit(".", 1)[-1])


def plain(text: str) -> str:
    """reStructuredText roles and literals as plain text, ``%`` escaped for argparse."""
    text = _ROLE.sub(r"\1", text).replace("``", "").replace("`", "")
    return " ".join(text.split()).replace("%", "%%")


# --------------------------------------------------------------------------- values


class Value:
    """argparse ``type``: one command-line word to a parameter value, checked on the spot.

    ``kinds`` are tried in order: ``int``, ``float``, ``str`` or an
    :class:`~sklearn.utils._param_validation.Interval`; ``choices`` are exact words;
    ``none`` gives ``None`` when ``allow_none``.
    """

    def __init__(self, kinds: Sequence[Any], choices: Sequence[str] = (), allow_none=False):
        self.kinds, self.choices, self.allow_none = list(kinds), tuple(choices), allow_none

    def __call__(self, text: str) -> Any:
        if self.allow_none and text.lower() == "none":
            return None
        if text in self.choices:
            return text
        for kind in self.kinds:
            value = _convert(kind, text)
            if value is not None and (not isinstance(kind, Interval) or value in kind):
                return value
        raise argparse.ArgumentTypeError(f"expected {self.describe()}; got {text!r}")

    def describe(self) -> str:
        parts = [str(k) if isinstance(k, Interval) else _KIND_NAMES[k] for k in self.kinds]
        if self.choices:
            parts.append("one of " + ", ".join(self.choices))
        if self.allow_none:
            parts.append("none")
        return " or ".join(parts)

    def metavar(self) -> str | None:
        """``{a,b,none}`` when every accepted word can be listed, else argparse's own."""
        if any(kind is not bool for kind in self.kinds):
            return None
        words = [*self.choices, *(["true", "false"] if self.kinds else [])]
        return "{" + ",".join(words + (["none"] if self.allow_none else [])) + "}"


def _convert(kind: Any, text: str) -> Any:
    target = kind.type if isinstance(kind, Interval) else kind
    try:
        if target is bool:
            return {"true": True, "false": False}.get(text.lower())
        if target in (int, Integral):
            return int(text)
        if target in (float, Real):
            return float(text)
        return target(text)
    except ValueError:
        return None


def _from_constraints(constraints: list, default: Any) -> tuple[Value | None, str | None]:
    """A :class:`Value` and ``nargs`` from scikit-learn constraints (None if none fits)."""
    kinds, choices, allow_none, nargs = [], [], False, None
    for c in constraints:
        if c is None:
            allow_none = True
        elif isinstance(c, StrOptions):
            choices += sorted(c.options - c.deprecated)
        elif isinstance(c, Interval):
            kinds.append(c)
        elif c == "boolean":
            kinds.append(bool)
        elif c in (str, os.PathLike) and str not in kinds:
            kinds.append(str)
        elif c in (Integral, int):
            kinds.append(int)
        elif c in (Real, float):
            kinds.append(float)
        elif c == "array-like" and isinstance(default, (tuple, list)) and default:
            kinds.append(type(default[0]))
            nargs = "+"
    if not kinds and not choices:
        return None, None
    return Value(kinds, choices, allow_none), nargs


def _from_hint(hint: Any) -> tuple[Value | None, str | None]:
    """A :class:`Value` and ``nargs`` from a type hint (None if it has no command-line form)."""
    args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        # the first member with a command-line form; None stays allowed where the hint has it
        for member in (a for a in args if a is not type(None)):
            value, nargs = _from_hint(member)
            if value is not None:
                value.allow_none = type(None) in args
                return value, nargs
        return None, None
    if origin is typing.Literal:
        return Value([], [str(a) for a in args]), None
    if origin in (list, tuple, Sequence):
        element = args[0] if args else None
        value, nargs = _from_hint(element)
        return (value, "+") if value is not None and nargs is None else (None, None)
    if hint in (int, float, str, bool):
        return Value([hint]), None
    return None, None


# --------------------------------------------------------------------------- options


def options_for(
    obj: Any,
    *,
    skip: Sequence[str] = (),
    only: Sequence[str] | None = None,
    aliases: dict[str, str] | None = None,
    choices: dict[str, Sequence[str]] | None = None,
) -> tuple[list[Option], list[str]]:
    """Options for the parameters of ``obj`` (a class: its ``__init__``) that have defaults.

    Returns the options and the names of parameters that have no command-line form
    (a callable, a module...); ``skip`` names parameters the caller provides otherwise.
    ``aliases`` adds a second flag; ``choices`` restricts a parameter to a library constant.
    """
    aliases, choices = aliases or {}, choices or {}
    function = obj.__init__ if inspect.isclass(obj) else obj
    signature = inspect.signature(function)
    hints = {} if inspect.isclass(obj) else typing.get_type_hints(function)
    constraints = getattr(obj, "_parameter_constraints", {})
    docs = parameter_docs(obj)
    options, unsupported = [], []
    for name, parameter in signature.parameters.items():
        if parameter.default is inspect.Parameter.empty or name in skip:
            continue
        if only is not None and name not in only:
            continue
        if name in constraints:
            value, nargs = _from_constraints(constraints[name], parameter.default)
        else:
            value, nargs = _from_hint(hints.get(name))
        if value is None:
            unsupported.append(name)
            continue
        if name in choices:
            value = Value([], list(choices[name]), value.allow_none)
        elif not value.choices and (listed := re.search(r"\{([^}]*)\}", docs.get(name, ("",))[0])):
            value.choices = tuple(w.strip(" \"'") for w in listed.group(1).split(","))
        flag = "--" + name.replace("_", "-")
        flags = (flag, aliases[name]) if name in aliases else (flag,)
        description = plain(docs.get(name, ("", ""))[1])
        options.append(
            Option(name, flags, parameter.default, description, value, nargs, value.metavar())
        )
    return options, unsupported


def show(value: Any) -> str:
    """A default as it would be typed on the command line."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (tuple, list)):
        return " ".join(show(v) for v in value)
    return str(value)


def add_options(
    parser: argparse.ArgumentParser,
    options: Sequence[Option],
    presets: dict[str, Preset] | None = None,
    *,
    owner: str = "",
) -> None:
    """Add ``options`` to ``parser``; a preset's default is resolved by :func:`values`."""
    presets = presets or {}
    for option in options:
        if option.name in presets:
            preset = presets[option.name]
            default = preset
            shown = f"{show(preset.value)} here, {preset.reason}; {owner}'s default: "
            shown += show(option.default)
        else:
            default, shown = option.default, show(option.default)
        parser.add_argument(
            *option.flags,
            dest=option.name,
            type=option.convert,
            nargs=option.nargs,
            metavar=option.metavar,
            default=default,
            help=f"{option.description} (default: {shown})".strip(),
        )


def values(args: argparse.Namespace, options: Sequence[Option]) -> dict[str, Any]:
    """``{parameter: value}`` of ``options``, presets resolved against the other arguments."""
    result = {}
    for option in options:
        value = getattr(args, option.name)
        if isinstance(value, Preset):
            value = value.value if value.when is None or value.when(args) else option.default
        if option.nargs == "+":
            value = tuple(value)
        result[option.name] = value
    return result
