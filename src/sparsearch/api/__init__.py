"""The REST API (FastAPI). Comes with the service issue; the core is usable from the CLI."""
