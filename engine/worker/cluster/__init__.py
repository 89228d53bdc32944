"""WORKER_BACKEND=ray: song workers on a Ray cluster (docs/scaling.md)."""
