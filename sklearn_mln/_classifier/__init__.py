"""The classifier wing: the small nets that are trained (single and population forms) and
:class:`~sklearn_mln.MLNClassifier`, a skorch classifier trained with any loss."""
