"""`mine.require_change`: the judge reads the corpus like the annotate stage, and each query keeps
its best describable candidates, capped, with `pair_rank` renumbered."""

from __future__ import annotations

import numpy as np

from megapairs.mine.describable import ChangeJudge, keep_describable
from tests.annotate.helpers import make_run


def test_judge_states_changes_from_the_corpus(tmp_path):
    make_run(tmp_path, captions=[["red kite", "blue kite", "kite", "owl"][i % 4] for i in range(16)])
    ids = [f"img{i:03d}" for i in range(16)]
    ok, kinds = ChangeJudge(tmp_path).judge([ids[0], ids[1], ids[2]], [ids[1], ids[2], ids[3]])
    assert ok.tolist() == [True, False, False]  # red -> blue kite; blue -> (no colour); kite -> owl
    assert kinds == ["colour", "", ""]


class _Judge:
    def __init__(self, ok):
        self.ok = ok

    def judge(self, q, t):
        return np.asarray(self.ok), ["colour" if o else "" for o in self.ok]


def test_keep_describable_caps_per_query_and_renumbers():
    cols = {"query_id": ["a", "a", "a", "a", "b"], "target_id": ["t1", "t2", "t3", "t4", "t5"],
            "best_score": np.arange(5, dtype=np.float32), "pair_rank": np.arange(5, dtype=np.int32)}
    out, counts = keep_describable(cols, _Judge([False, True, True, True, True]), max_targets=2)
    assert out["target_id"] == ["t2", "t3", "t5"]  # best-first order kept, t4 over the cap
    assert out["pair_rank"].tolist() == [0, 1, 0]
    assert out["best_score"].tolist() == [1.0, 2.0, 4.0]
    assert counts == {"candidates": 5, "describable_candidates": 4, "kept": 3, "kept_colour": 3}
