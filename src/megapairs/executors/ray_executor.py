"""Ray executor: a pool of actors, each building the stage's worker once (models load inside the
actor, never pickled from the driver) and writing its shards to the shared run folder."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from megapairs.errors import unwrap
from megapairs.progress import STAGE_UNITS, Progress

if TYPE_CHECKING:
    from megapairs.stages import ShardTask, Stage


def _require_ray():
    try:
        import ray
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise ImportError("the Ray executor needs Ray: pip install 'megapairs[dist]'") from e
    return ray


class RayExecutor:
    name = "ray"

    def __init__(self, address: str | None = None, num_actors: int | None = None,
                 num_cpus_per_actor: float = 1.0, num_gpus_per_actor: float = 0.0,
                 object_store_memory: int = 512 * 1024**2) -> None:
        self.address = address
        self.num_actors = num_actors
        self.num_cpus_per_actor = num_cpus_per_actor
        self.num_gpus_per_actor = num_gpus_per_actor
        self.object_store_memory = object_store_memory

    def _init(self):
        ray = _require_ray()
        if not ray.is_initialized():
            if self.address:
                ray.init(address=self.address, log_to_driver=True)
            else:
                # Bind every listener to loopback on a single machine.
                os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
                os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
                ray.init(num_cpus=os.cpu_count() or 2, include_dashboard=False,
                         object_store_memory=self.object_store_memory, log_to_driver=True)
        return ray

    def run(self, stage: "Stage", tasks: list["ShardTask"]) -> None:
        if not tasks:
            return
        ray = self._init()

        @ray.remote(num_cpus=self.num_cpus_per_actor, num_gpus=self.num_gpus_per_actor)
        class ShardActor:
            def __init__(self, stage: Any) -> None:
                # An error while building the worker is kept and raised by run(): Ray reports a failed
                # __init__ only as "actor died" text, while a task error carries the exception itself.
                self.worker, self.init_error = None, None
                try:
                    self.worker = stage.make_worker()
                except Exception as e:
                    self.init_error = e

            def run(self, task: Any) -> int:
                if self.init_error is not None:
                    raise self.init_error
                self.worker(task)
                return task.index

        n = self.num_actors or max(1, min(len(tasks), int(ray.available_resources().get("CPU", 1))))
        actors = [ShardActor.remote(stage) for _ in range(n)]
        pool = ray.util.ActorPool(actors)
        unit = STAGE_UNITS.get(stage.name, "item") if any(t.size for t in tasks) else "shard"
        progress = Progress(total=sum(t.size for t in tasks) or len(tasks), desc=f"{stage.name} (ray x{n})",
                            unit=unit)
        sizes = {t.index: t.size or 1 for t in tasks}
        try:
            for index in pool.map_unordered(lambda a, t: a.run.remote(t), tasks):
                progress.update(sizes[index])
        except ray.exceptions.RayTaskError as e:
            raise unwrap(e) from None  # the worker's own exception, not ~100 lines of Ray traceback
        finally:
            progress.close()
            for a in actors:
                ray.kill(a)
