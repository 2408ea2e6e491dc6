"""In-process executor: builds the worker once and runs shards in plan order."""

from __future__ import annotations

from typing import TYPE_CHECKING

from megapairs.progress import Progress

if TYPE_CHECKING:
    from megapairs.stages import ShardTask, Stage


class LocalExecutor:
    name = "local"

    def run(self, stage: "Stage", tasks: list["ShardTask"]) -> None:
        if not tasks:
            return
        worker = stage.make_worker()
        progress = Progress(total=sum(t.size for t in tasks) or len(tasks), desc=stage.name)
        try:
            for task in tasks:
                worker(task)
                progress.update(task.size or 1)
        finally:
            progress.close()
