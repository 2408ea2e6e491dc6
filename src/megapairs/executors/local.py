"""In-process executor: builds the worker once and runs shards in plan order.

Stages that declare `cpu_parallel = True` (pure CPU work with no big model, e.g. ingest's
decoding and SVG rendering) run on a process pool of `processes` workers instead.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
import time
from typing import TYPE_CHECKING, Any

from megapairs.progress import Progress

if TYPE_CHECKING:
    from megapairs.stages import ShardTask, Stage

_worker: Any = None


def _init_worker(stage: "Stage") -> None:
    global _worker
    _worker = stage.make_worker()


def _run_task(task: "ShardTask") -> int:
    _worker(task)
    return task.index


class LocalExecutor:
    name = "local"

    def __init__(self, processes: int | None = None) -> None:
        self.processes = processes if processes is not None else (os.cpu_count() or 1)

    def run(self, stage: "Stage", tasks: list["ShardTask"]) -> None:
        if not tasks:
            return
        progress = Progress(total=sum(t.size for t in tasks) or len(tasks), desc=stage.name)
        try:
            if getattr(stage, "cpu_parallel", False) and self.processes > 1 and len(tasks) > 1:
                self._run_pool(stage, tasks, progress)
            else:
                self._run_inline(stage, tasks, progress)
        finally:
            progress.close()

    def _run_inline(self, stage: "Stage", tasks: list["ShardTask"], progress: Progress) -> None:
        worker = stage.make_worker()
        # Test hook for crash/resume tests: a pause after each shard, so a kill lands mid-stage.
        delay = float(os.environ.get("MEGAPAIRS_SHARD_DELAY_S", "0"))
        for task in tasks:
            worker(task)
            progress.update(task.size or 1)
            if delay:
                time.sleep(delay)

    def _run_pool(self, stage: "Stage", tasks: list["ShardTask"], progress: Progress) -> None:
        sizes = {t.index: t.size or 1 for t in tasks}
        ctx = mp.get_context("spawn")  # no fork of a process that may hold torch/faiss threads
        with cf.ProcessPoolExecutor(min(self.processes, len(tasks)), mp_context=ctx,
                                    initializer=_init_worker, initargs=(stage,)) as pool:
            for index in [f for f in cf.as_completed([pool.submit(_run_task, t) for t in tasks])]:
                progress.update(sizes[index.result()])
