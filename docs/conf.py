"""Sphinx configuration of the sklearn-mln documentation.

Build (from the repository root; the gallery examples are executed)::

    sphinx-build -W -b html docs docs/_build/html

Environment variables read here:

``SKLEARN_MLN_INTERSPHINX=1``
    Link to the scikit-learn, PyTorch, NumPy, skorch, joblib and Python docs. Off by
    default, because the build machine may have no internet and a failed inventory fetch
    is a warning (an error under ``-W``).
``SKLEARN_MLN_EXAMPLES_FAST=1``
    Read by the examples: even smaller budgets (CI).
``SKLEARN_MLN_DOCS_PLOT_GALLERY=0``
    Do not execute the examples (fast build of the text only).
"""

import os
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # the package need not be installed to build its docs
sys.path.insert(0, str(DOCS / "_ext"))

# The examples train tiny networks: one torch thread each is fastest and avoids
# oversubscribing the cores (set before torch is imported).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import sklearn_mln  # noqa: E402

project = "sklearn-mln"
author = "the sklearn-mln developers"
copyright = "the sklearn-mln developers"
release = sklearn_mln.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "matplotlib.sphinxext.plot_directive",
    "benchmark_results",  # docs/_ext: benchmarks/results/*.md -> docs/generated/
    "api_coverage",  # docs/_ext: every public name must be in api.rst
    "cli_help",  # docs/_ext: `.. cli-help:: evolve` prints the generated --help
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "README.md", "Thumbs.db", ".DS_Store"]
root_doc = "index"
default_role = "literal"

# ----------------------------------------------------------------------------- autodoc / numpydoc
autosummary_generate = True
autodoc_typehints = "none"  # numpydoc's Parameters sections say it
autodoc_member_order = "bysource"
numpydoc_show_class_members = False  # no autosummary stubs for every inherited method
numpydoc_class_members_toctree = False
# a modest set: structure errors that break the rendered page, not style
numpydoc_validation_checks = {"GL06", "GL07", "GL10", "SS01", "PR10"}
numpydoc_validation_exclude = {r"\.__init__$", r"\.forward$", r"\.extra_repr$"}


def _skip_member(app, what, name, obj, skip, options):
    """Leave out scikit-learn's generated ``set_<method>_request`` (metadata routing)."""
    if re.fullmatch(r"set_\w+_request", name):
        return True
    return None


_SHAPE = re.compile(r"shape \(([^()]*)\)")
_TRAILING_UNDERSCORE = re.compile(r"(?<![`\w])([A-Za-z]\w*_)(?![`\w])")


def _quote_shapes(app, what, name, obj, options, lines):
    """``of shape (n_features_in_,)``: quote names ending in ``_``, not reST link targets."""
    for i, line in enumerate(lines):
        lines[i] = _SHAPE.sub(
            lambda m: "shape (" + _TRAILING_UNDERSCORE.sub(r"``\1``", m.group(1)) + ")", line
        )


def setup(app):
    app.connect("autodoc-skip-member", _skip_member)
    # before numpydoc (priority 500) sees the docstring
    app.connect("autodoc-process-docstring", _quote_shapes, priority=400)


# ----------------------------------------------------------------------------- intersphinx
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "numpy": ("https://numpy.org/doc/stable", None),
    "sklearn": ("https://scikit-learn.org/stable", None),
    "torch": ("https://docs.pytorch.org/docs/stable", None),
    "skorch": ("https://skorch.readthedocs.io/en/stable", None),
    "joblib": ("https://joblib.readthedocs.io/en/stable", None),
    "matplotlib": ("https://matplotlib.org/stable", None),
}
if os.environ.get("SKLEARN_MLN_INTERSPHINX") != "1":
    # offline by default: keep the mapping above documented, fetch nothing
    intersphinx_mapping = {}
intersphinx_timeout = 10

# ----------------------------------------------------------------------------- sphinx-gallery
# examples are named plot_<NN>_*.py: run and shown in that order

sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "within_subsection_order": "FileNameSortKey",
    "backreferences_dir": "generated/backreferences",
    "doc_module": ("sklearn_mln",),
    "abort_on_example_error": True,
    "plot_gallery": os.environ.get("SKLEARN_MLN_DOCS_PLOT_GALLERY", "True") not in ("0", "False"),
    "show_memory": False,
    "min_reported_time": 1,
    "matplotlib_animations": False,
    "remove_config_comments": True,
}

# ----------------------------------------------------------------------------- plot directive
plot_include_source = False
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = [("png", 110)]

# ----------------------------------------------------------------------------- HTML
html_theme = "pydata_sphinx_theme"
html_title = f"sklearn-mln {release}"
html_static_path = []
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version", "theme-version"],
}
html_sidebars = {"index": [], "results": []}
html_show_sourcelink = False
