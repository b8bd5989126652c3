"""The evolution wing, in the order of the method: few-shot tasks, the inner training loop,
a population over joblib workers, the CMA-ES adapter, a run as a value and its checkpoint,
and :class:`~sklearn_mln.MLNEvolver` on top."""
