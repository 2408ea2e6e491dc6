"""In-process executor: builds the worker once and runs shards in plan order."""

from __future__ import annotations

import os
import time
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
        # Test hook for crash/resume tests: a pause after each shard, so a kill lands mid-stage.
        delay = float(os.environ.get("MEGAPAIRS_SHARD_DELAY_S", "0"))
        progress = Progress(total=sum(t.size for t in tasks) or len(tasks), desc=stage.name)
        try:
            for task in tasks:
                worker(task)
                progress.update(task.size or 1)
                if delay:
                    time.sleep(delay)
        finally:
            progress.close()
