"""Progress: within-shard reports reach the stage's bar (inline and from a process pool), shards
count once in full, and each stage's bar counts its own unit (pairs and triplets are not "img")."""

from __future__ import annotations

import pytest

from megapairs.executors.local import LocalExecutor
from megapairs.progress import STAGE_UNITS, Progress, ShardCounter, advance
from megapairs.stages import ShardTask

SEEN: list[int] = []  # bar.done as the inline worker saw it, mid-shard


class FakeStage:
    """Stands in for a pipeline stage: each shard reports its items in steps of 2."""

    def __init__(self, name: str, cpu_parallel: bool = False, overshoot: int = 0) -> None:
        self.name, self.cpu_parallel, self.overshoot = name, cpu_parallel, overshoot

    def make_worker(self):
        def work(task: ShardTask) -> None:
            for _ in range(0, task.size, 2):
                advance(2)
            advance(self.overshoot)  # a worker that over-reports must not push the bar past the shard

        return work


class Recorder(Progress):
    instances: list["Recorder"] = []

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.steps: list[int] = []
        Recorder.instances.append(self)

    def update(self, n: int = 1, **postfix) -> None:
        self.steps.append(n)
        super().update(n, **postfix)


@pytest.fixture
def recorder(monkeypatch):
    import megapairs.executors.local as local

    Recorder.instances.clear()
    monkeypatch.setattr(local, "Progress", Recorder)
    return Recorder


def test_inline_shards_move_the_bar_within_the_shard(recorder):
    tasks = [ShardTask(0, None, 6), ShardTask(1, None, 5)]
    LocalExecutor(processes=1).run(FakeStage("embeddings", overshoot=3), tasks)
    bar = recorder.instances[0]
    assert bar.unit == "img" and bar.total == 11 and bar.done == 11
    assert bar.steps[:3] == [2, 2, 2], "items are counted as the worker reports them, not per shard"


def test_pool_reports_arrive_and_count_once(recorder):
    tasks = [ShardTask(i, None, 4) for i in range(3)]
    LocalExecutor(processes=2).run(FakeStage("corpus", cpu_parallel=True, overshoot=5), tasks)
    bar = recorder.instances[0]
    assert bar.done == 12 and bar.unit == "img"
    assert 2 in bar.steps, "within-shard reports from the pool workers reached the bar"


@pytest.mark.parametrize("stage, unit", [("annotations", "pair"), ("dataset", "triplet"), ("pairs", "query")])
def test_units_per_stage(recorder, stage, unit, capsys):
    LocalExecutor(processes=1).run(FakeStage(stage), [ShardTask(0, None, 4)])
    assert recorder.instances[0].unit == unit == STAGE_UNITS[stage]
    assert f"{stage}: 4 {unit} in" in capsys.readouterr().err


def test_shard_counter_tops_up_silent_shards():
    bar = Progress(10, "x", disable=True)
    c = ShardCounter(bar, {0: 4, 1: 6})
    c.report(0, 3)
    c.finish(0)
    c.finish(1)  # reported nothing: counted in full at the end
    c.report(1, 2)  # late report of a finished shard: ignored
    assert bar.done == 10


def test_periodic_lines_in_logs(capsys):
    bar = Progress(100, "image features", unit="img", log_every_s=0.0)
    bar.update(40)
    bar.close()
    err = capsys.readouterr().err
    assert "image features: 40/100 img (" in err and "img/s, ETA" in err
