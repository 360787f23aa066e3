"""A real local Ray for the search tests, started once per session and shared."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def ray_address():
    import ray

    from sparsearch.worker.remote import init_ray

    started = init_ray("", num_cpus=2, object_store_mb=200)
    yield ray.get_runtime_context().gcs_address
    if started:
        ray.shutdown()
