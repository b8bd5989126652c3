"""Model selection for MLNClassifier: every (candidate, fold) classifier as one population."""
