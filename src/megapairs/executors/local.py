"""In-process executor: builds the worker once and runs shards in plan order.

Stages that declare `cpu_parallel = True` (pure CPU work with no big model, e.g. ingest's
decoding and SVG rendering) run on a process pool of `processes` workers instead.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import multiprocessing as mp
import os
import queue
import time
from typing import TYPE_CHECKING, Any

from megapairs.progress import STAGE_UNITS, Progress, ShardCounter, reporting_to

if TYPE_CHECKING:
    from megapairs.stages import ShardTask, Stage

_worker: Any = None
_reports: Any = None  # the pool's queue of (shard, items done) within-shard reports


def _init_worker(stage: "Stage", reports: Any = None) -> None:
    global _worker, _reports
    _worker = stage.make_worker()
    _reports = reports


def _run_task(task: "ShardTask") -> int:
    report = functools.partial(_put, task.index) if _reports is not None else None
    with reporting_to(report):
        _worker(task)
    return task.index


def _put(shard: int, n: int) -> None:
    _reports.put((shard, n))


class LocalExecutor:
    name = "local"

    def __init__(self, processes: int | None = None) -> None:
        self.processes = processes if processes is not None else (os.cpu_count() or 1)

    def run(self, stage: "Stage", tasks: list["ShardTask"]) -> None:
        if not tasks:
            return
        unit = STAGE_UNITS.get(stage.name, "item") if any(t.size for t in tasks) else "shard"
        progress = Progress(total=sum(t.size for t in tasks) or len(tasks), desc=stage.name, unit=unit)
        try:
            if getattr(stage, "cpu_parallel", False) and self.processes > 1 and len(tasks) > 1:
                self._run_pool(stage, tasks, progress)
            else:
                self._run_inline(stage, tasks, progress)
        finally:
            progress.close()

    def _run_inline(self, stage: "Stage", tasks: list["ShardTask"], progress: Progress) -> None:
        worker = stage.make_worker()
        counter = ShardCounter(progress, {t.index: t.size or 1 for t in tasks})
        # Test hook for crash/resume tests: a pause after each shard, so a kill lands mid-stage.
        delay = float(os.environ.get("MEGAPAIRS_SHARD_DELAY_S", "0"))
        for task in tasks:
            with reporting_to(functools.partial(counter.report, task.index)):
                worker(task)
            counter.finish(task.index)
            if delay:
                time.sleep(delay)

    def _run_pool(self, stage: "Stage", tasks: list["ShardTask"], progress: Progress) -> None:
        counter = ShardCounter(progress, {t.index: t.size or 1 for t in tasks})
        ctx = mp.get_context("spawn")  # no fork of a process that may hold torch/faiss threads
        reports = ctx.Queue()
        with cf.ProcessPoolExecutor(min(self.processes, len(tasks)), mp_context=ctx,
                                    initializer=_init_worker, initargs=(stage, reports)) as pool:
            pending = {pool.submit(_run_task, t) for t in tasks}
            while pending:
                done, pending = cf.wait(pending, timeout=0.5, return_when=cf.FIRST_COMPLETED)
                _drain(reports, counter)
                for f in done:
                    counter.finish(f.result())
        _drain(reports, counter)


def _drain(reports: Any, counter: ShardCounter) -> None:
    while True:
        try:
            shard, n = reports.get_nowait()
        except queue.Empty:
            return
        counter.report(shard, n)
