"""Sphinx extension: warn (an error under ``-W``) when a public name is missing from api.rst.

Public names are ``sklearn_mln.__all__`` (but ``__version__``) and the ``__all__`` of
``sklearn_mln.datasets``, ``sklearn_mln.plotting``, ``sklearn_mln.benchmark`` and
``sklearn_mln.toolkit``; api.rst
lists each, as ``Name`` under a ``.. currentmodule::`` of its module, in an
``autosummary`` table.
"""

import importlib
import re
from pathlib import Path

from sphinx.util import logging

logger = logging.getLogger(__name__)
PUBLIC_MODULES = (
    "sklearn_mln",
    "sklearn_mln.datasets",
    "sklearn_mln.plotting",
    "sklearn_mln.benchmark",
    "sklearn_mln.toolkit",
)


def documented_names(api_rst: str) -> set[str]:
    """Fully qualified names listed in the autosummary tables of ``api_rst``."""
    names, module = set(), None
    in_table = False
    for line in api_rst.splitlines():
        if m := re.match(r"\.\. currentmodule:: (\S+)", line.strip()):
            module = m.group(1)
        elif line.strip().startswith(".. autosummary::"):
            in_table = True
        elif in_table and line and not line[0].isspace():
            in_table = False
        elif in_table and line.strip() and not line.strip().startswith(":"):
            name = line.strip().lstrip("~")
            qualified = name.startswith("sklearn_mln.")
            names.add(name if qualified else f"{module}.{name}")
    return names


def public_names() -> set[str]:
    names = set()
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        names |= {f"{module_name}.{n}" for n in module.__all__ if n != "__version__"}
    return names


def check_api_coverage(app) -> None:
    api = Path(app.srcdir, "api.rst").read_text(encoding="utf-8")
    for name in sorted(public_names() - documented_names(api)):
        logger.warning("public name %s is missing from docs/api.rst", name, type="sklearn_mln")


def setup(app):
    app.connect("builder-inited", check_api_coverage)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
