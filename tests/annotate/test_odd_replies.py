"""Replies that are valid JSON but carry odd types become failure rows with a reason, not a crash."""

from __future__ import annotations

import pytest

from megapairs.annotate.llm import BackendError, GenRequest
from tests.annotate.test_annotator import annotate, config, items
from tests.annotate.test_client import gen, run


@pytest.mark.parametrize("kind, mode, field", [("openai", "badusage", "usage.prompt_tokens"),
                                               ("openai-completions", "badusage", "usage.prompt_tokens"),
                                               ("openai", "badparts", "choices[0].message.content[0].text"),
                                               ("openai-completions", "badparts", "choices[0].text")])
def test_odd_types_are_a_request_error_naming_the_field(server, kind, mode, field) -> None:
    server.control(script=[mode] * 2)
    with pytest.raises(BackendError) as ei:
        run(gen(server.url, kind=kind, retries=1), GenRequest(prompt="hello"))
    assert not ei.value.unavailable and field in str(ei.value) and "malformed response" in str(ei.value)


def test_odd_types_become_failure_rows_with_the_reason(server) -> None:
    server.control(script=["badusage"] * 200)
    cfg = config(server.url, describer_fallbacks=[], writer_fallbacks=[])
    rows, info = annotate(cfg, items(3))
    assert len(rows) == 3
    for r in rows:
        assert r["status"] != "ok" and "usage.prompt_tokens is [1, 2]" in r["reason"], r
