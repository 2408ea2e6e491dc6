"""Executors run a stage's pending shards: locally (default) or on Ray. Same stage code under both."""

from __future__ import annotations

from megapairs.executors.local import LocalExecutor


def make_executor(spec: str = "local", **options):
    """`local`, `ray` (a local Ray instance) or `ray:ADDRESS` (an existing cluster)."""
    if spec == "local":
        return LocalExecutor()
    if spec == "ray" or spec.startswith("ray:"):
        from megapairs.executors.ray_executor import RayExecutor

        address = spec.split(":", 1)[1] if ":" in spec else None
        return RayExecutor(address=address, **options)
    raise ValueError(f"unknown executor {spec!r}; use local, ray or ray:ADDRESS")


__all__ = ["LocalExecutor", "make_executor"]
