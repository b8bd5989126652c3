"""``python -m sklearn_mln evolve | evaluate | benchmark`` (the commands are in
:mod:`sklearn_mln._cli._main`)."""

import sys

from ._cli._main import main
from ._cli._parser import build_parser  # the parser, for documentation tools

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
