"""Sphinx extension: ``.. cli-help:: evolve`` shows ``python -m sklearn_mln evolve --help``.

The help is generated from the estimators when the docs are built (see
:mod:`sklearn_mln._cli._options`), so the page cannot drift from the command line.
"""

import os

from docutils import nodes
from docutils.parsers.rst import Directive


class CliHelp(Directive):
    required_arguments = 1  # the command: evolve, evaluate or benchmark

    def run(self):
        from sklearn_mln.__main__ import build_parser

        previous = os.environ.get("COLUMNS")
        os.environ["COLUMNS"] = "92"  # argparse wraps to the terminal's width
        try:
            parser = build_parser()
            commands = parser._subparsers._group_actions[0].choices
            text = commands[self.arguments[0]].format_help()
        finally:
            if previous is None:
                os.environ.pop("COLUMNS")
            else:
                os.environ["COLUMNS"] = previous
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


def setup(app):
    app.add_directive("cli-help", CliHelp)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
