"""The command line wing: options derived from estimator signatures, the parser, and the
commands ``evolve | evaluate | benchmark``."""
