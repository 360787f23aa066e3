"""The search driver: Ax multi-objective ask/tell, Ray dispatch, Pareto front and hypervolume.

Import the pieces from their modules (``sparsearch.search.driver``); this package keeps Ax and
Ray out of anything that only needs the front or hypervolume helpers."""
