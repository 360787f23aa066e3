"""The search: the driver (Ray dispatch, resume), the known-constraint screen, the strategies
behind one protocol, candidates generated ahead (lookahead), Pareto front and hypervolume.

Import the pieces from their modules (``sparsearch.search.driver``); this package imports
nothing itself, so the front and hypervolume helpers load without BoTorch, Optuna or Ray."""
