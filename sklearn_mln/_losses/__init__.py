"""The losses wing: the meta-loss network (spec, functional core, module), its CPU kernels,
its file format, the classical losses, and turning what a user passes into a loss.
The shipped evolved losses live in :mod:`sklearn_mln.pretrained`."""
