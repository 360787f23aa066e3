"""Trial execution: data sets, training, pruning, export and the Ray wrapper.

``run_trial`` (``sparsearch.worker.trial``) is pure and Ray-free; ``sparsearch.worker.remote``
is the thin Ray layer. Import from the modules: this package keeps torch out of its import."""
