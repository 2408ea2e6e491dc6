"""Parsing, validation, prompts and config (no server)."""

from __future__ import annotations

import json
import random

import pytest

from megapairs.annotate.config import AnnotateConfig
from megapairs.annotate.prompts import PromptSet, demo_budget
from megapairs.annotate.validate import (check_description, check_instructions, clean_description,
                                         parse_instruction_list)
from megapairs.configbase import ConfigError

DESC = "Shared: both show a tabby cat. Source only: it sleeps indoors. Target only: it stretches on a garden fence."


@pytest.mark.parametrize("text,primed,expected", [
    (' "Same cat outside.", "On a fence.", "Awake now."]', True, ["Same cat outside.", "On a fence.", "Awake now."]),
    ('["a b", "c d"]', True, ["a b", "c d"]),
    ('Sure! Here they are:\n```json\n["one two", "three four", "five six"]\n```', False,
     ["one two", "three four", "five six"]),
    ('"cut short one", "cut short two', True, ["cut short one", "cut short two"]),
    ('1. first request here\n2) second request here\n- third request here', False,
     ["first request here", "second request here", "third request here"]),
    ("", True, []),
])
def test_parse_instruction_list(text: str, primed: bool, expected: list[str]) -> None:
    assert parse_instruction_list(text, primed=primed) == expected


def _check(cands: list[str], **kw: int):
    opts = {"min_count": 3, "max_count": 6, "max_chars": 80, "min_words": 2, **kw}
    return check_instructions(cands, DESC, **opts)


def test_check_instructions_reasons() -> None:
    r = _check(["Same cat, but outside on a fence.", "same cat but outside on a fence", "I'm sorry, I can't do that.",
                "", "x " * 60, "ok", "Shared: both show a tabby cat", DESC, "Show it stretching in a garden."])
    why = [w for _, w in r.rejected]
    assert r.instructions == ["Same cat, but outside on a fence.", "Show it stretching in a garden."]
    assert not r.ok and r.reason.startswith("only 2 valid of 9 (need 3)")
    assert sorted(why) == sorted(["duplicate", "refusal", "empty", "too_long", "too_short", "format_leak",
                                  "too_long"])
    assert len(r.rejected) + len(r.instructions) == 9  # nothing silently dropped


def test_copy_of_description_rejected() -> None:
    r = _check(["it stretches on a garden fence and more", "Show me one on a fence.", "Awake and outside.",
                "A cat that is awake."], max_chars=200)
    assert ("it stretches on a garden fence and more", "copies_description") not in r.rejected  # 8 words, not inside
    r2 = _check(["Target only it stretches on a garden fence"], max_chars=200)
    assert r2.rejected == [("Target only it stretches on a garden fence", "copies_description")]


def test_check_instructions_ok_and_cap() -> None:
    r = _check([f"request number {i} here" for i in range(8)], max_count=4)
    assert r.ok and len(r.instructions) == 4 and r.reason == ""


def test_description_checks() -> None:
    assert check_description(DESC, 60) == ""
    assert check_description("", 60) == "empty"
    assert check_description("I am sorry, but I cannot see the images you sent me today.", 60) == "refusal"
    assert check_description("Shared: cat.", 60) == "too_short"
    assert check_description(" ".join(["word"] * 200), 60) in ("too_long", "repetitive")
    loop = "Shared: a red car with a red roof, a red car with a red roof, a red car with a red roof, fine."
    assert check_description(loop, 60) == "repetitive"
    assert clean_description(" both show x.", primed_prefix="Shared:") == "Shared: both show x."
    assert clean_description("Note: Shared: y") == "Shared: y"


def test_demo_pool_and_prompts() -> None:
    p = PromptSet("v1")
    assert len(p.demos) >= 50
    assert len({d.id for d in p.demos}) == len(p.demos)
    for d in p.demos:
        assert d.relation.startswith("Shared:") and "Source only:" in d.relation and "Target only:" in d.relation
        assert len(d.queries) >= 3 and all(len(q) <= 120 for q in d.queries)
        assert check_instructions(list(d.queries), d.relation, min_count=3, max_count=6, max_chars=300,
                                  min_words=2).ok, d.id
    demos = p.sample_demos(random.Random(1), 5)
    assert [d.id for d in demos] == [d.id for d in p.sample_demos(random.Random(1), 5)]
    w = p.write(DESC, demos)
    assert w.endswith("Requests: [") and w.count("Requests: [") == 6  # 5 demos + the open task
    assert json.loads(w.split("Requests: ", 2)[1].split("\n")[0]) == list(demos[0].queries)
    c = p.describe_captions("a cat", "cat", "a dog", "dog", 70, demos)
    assert c.endswith("Note: Shared:") and "Word budget: 70" in c
    assert "at most 80 words" in p.describe_images(80)
    assert demo_budget("one two three") == 20


def test_unknown_prompt_version() -> None:
    with pytest.raises(ValueError, match="unknown prompt version"):
        PromptSet("v999")


def test_config_validation_and_hash() -> None:
    with pytest.raises(ConfigError, match="word_range"):
        AnnotateConfig.from_dict({"word_range": [100, 60]})
    with pytest.raises(ConfigError, match="max_instructions"):
        AnnotateConfig.from_dict({"min_instructions": 5, "max_instructions": 3})
    a = AnnotateConfig.from_dict({"writer": "openai:http://10.0.0.1:8000/v1#llama", "concurrency": 2})
    b = AnnotateConfig.from_dict({"writer": "openai:http://127.0.0.1:9/v1#llama", "concurrency": 64,
                                  "api_key": "secret"})
    c = AnnotateConfig.from_dict({"writer": "openai:http://127.0.0.1:9/v1#other"})
    assert a.config_hash() == b.config_hash() != c.config_hash()
    assert "secret" not in json.dumps(b.hashed_dict()) + json.dumps(b.to_dict()) and b.api_key == "secret"
    assert AnnotateConfig().word_range == (60, 100)
