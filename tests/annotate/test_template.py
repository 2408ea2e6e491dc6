"""The template describer and writer, caption cleaning, the line-mode prompt and its checks (no server)."""

from __future__ import annotations

import asyncio

from megapairs.annotate import template
from megapairs.annotate.config import AnnotateConfig
from megapairs.annotate.prompts import PromptSet, target_of
from megapairs.annotate.roles import PairItem, RoleContext, TemplateDescriber, TemplateWriter
from megapairs.annotate.validate import check_instructions, direction_problem, is_vague

FLAGS = ("Mexico: united_nations_member, latin_america, flag, north_america, sign", "signs_and_symbols/flags/america",
         "Brazil: united_nations_member, latin_america, south_america, flag, sign", "signs_and_symbols/flags/america")


def test_strip_junk() -> None:
    assert template.strip_junk("PC connectors: hash(0x866e640), hash(0x86761b8), hardware. a.b@gmail.com") == \
        "PC connectors: hardware."
    assert template.strip_junk("Part of the Flat Icon Collection (Wed Aug 25 23:23:49 2004): icons") == \
        "Part of the Flat Icon Collection: icons"
    assert template.strip_junk("Pizza: food. see https://example.org/x and mail me@host.org") == \
        "Pizza: food. see and mail"
    assert template.strip_junk("Clipart by Nicu Buculei - birthday cake: holiday") == "birthday cake: holiday"


def test_parse_caption() -> None:
    info = template.parse_caption("Lighthouse: navigation, boat, house. A tall tower", "buildings/lighthouses")
    assert info.title == "Lighthouse" and info.keywords == ["navigation", "boat", "house"]
    assert info.leaf == "lighthouses"
    plain = template.parse_caption("a tabby cat asleep indoors", "cat")
    assert plain.title == "a tabby cat asleep indoors" and plain.keywords == [] and plain.leaf == "cat"
    assert template.parse_caption("unsorted", "").title == ""


def test_describe_follows_the_paper_template() -> None:
    d = template.describe(*FLAGS)
    assert d == ("Both images show america flags. However, the source image shows Mexico (north america), "
                 "whereas the target image shows Brazil (south america).")
    cat = template.describe("a tabby cat asleep indoors", "cat", "a tabby cat on a garden fence", "cat")
    assert cat == ("Both images show a cat. However, the source image shows a tabby cat asleep indoors, whereas "
                   "the target image shows a tabby cat on a garden fence.")
    same = template.describe("gramastar: stars, shapes", "shapes/stars", "gramastar: stars, shapes", "shapes/stars")
    assert same.startswith("Both images show stars. However,") and "another gramastar design" in same
    junk = template.describe("PC connectors: hash(0x866e640), hardware", "computer/connectors",
                             "Battery: icon, snu@autistici.org, battery", "computer")
    assert "hash" not in junk and "@" not in junk and "whereas the target image shows Battery" in junk
    assert template.describe("a cat", "cat", "", "") == ""


def test_template_writer_and_describer_roles() -> None:
    ctx = RoleContext(AnnotateConfig(), PromptSet("v1"), lambda spec: None)  # type: ignore[arg-type]
    item = PairItem("q", "t", *FLAGS)
    note = asyncio.run(TemplateDescriber(ctx).describe(item, 60))
    assert note.reason == "" and note.text.startswith("Both images show america flags")
    out = asyncio.run(TemplateWriter(ctx).write(item, note.text, 0))
    assert out.check.ok and out.check.instructions == [
        "Show Brazil instead.", "The same kind of america flags, but Brazil.", "Like this one, but Brazil."]
    assert all(len(x.split()) <= 15 for x in out.check.instructions)
    # No captions: the note's target part is used ("Target only:" or "whereas the target image shows").
    note = "Shared: x. Source only: a. Target only: a red kite."
    bare = asyncio.run(TemplateWriter(ctx).write(PairItem("q", "t"), note, 0))
    assert bare.check.ok and bare.check.instructions[0] == "Show a red kite instead."
    assert template.note_parts("Both images show x. However, the source image shows a dog, whereas the target "
                               "image shows a cat.") == ("a dog", "a cat")


def test_direction_and_topic_checks() -> None:
    note = template.describe(*FLAGS)
    parts = template.note_parts(note)
    assert direction_problem("Show the flag of Brazil instead.", parts, note) == ""
    assert direction_problem("Make it Mexico.", parts, note) == "wrong_direction"
    assert direction_problem("Show the Mexican flag, not Brazil.", parts, note) == "wrong_direction"
    assert direction_problem("Make it a cockroach.", parts, note) == "off_topic"
    assert direction_problem("The same kind of related subjects.", parts, note) == "off_topic"  # frame words only
    assert direction_problem("The same kind of flag.", parts, note) == ""  # vague but on topic
    r = check_instructions(["Show Brazil instead.", "Make it Mexico.", "Show the flag of Brazil now please, in a big "
                            "size, bright and shiny, on a pole, in the wind.", "Make it purple.", "Relation: Brazil"],
                           note, min_count=1, max_count=6, max_chars=300, min_words=2, max_words=16,
                           demo_texts=["Make it purple."], relation_parts=parts)
    assert r.instructions == ["Show Brazil instead."]
    assert [w for _, w in r.rejected] == ["wrong_direction", "too_long", "copies_demo", "format_leak"]


def test_line_prompt() -> None:
    p = PromptSet("v1")
    assert p.has_line_mode and len(p.line_demos) >= 30 and len(p.openers) >= 5
    for d in p.line_demos:
        assert d.relation.startswith("Both images ") and "whereas the target image shows" in d.relation, d.id
        assert target_of(d.relation) and all(len(x.split()) <= 12 for x in d.instructions), d.id
        ok = check_instructions(list(d.instructions), d.relation, min_count=3, max_count=6, max_chars=300,
                                min_words=2, max_words=16, relation_parts=template.note_parts(d.relation))
        assert ok.ok and not ok.rejected, (d.id, ok.rejected)
        assert not any(is_vague(x, template.note_parts(d.relation)) for x in d.instructions), d.id
    shots = p.line_demo_set(0, 0, 4)
    assert shots == p.line_demo_set(0, 0, 4) and len(shots) == 4 and shots != p.line_demo_set(0, 1, 4)
    text = p.write_line(template.describe(*FLAGS), [t for _, t in shots], "Show")
    assert text.endswith("Target: Brazil (south america)\nInstruction: Show")
    assert text.count("Relation: ") == 5 and text.count("Instruction: ") == 5
    assert target_of("Shared: a. Source only: b. Target only: a kite at dusk.") == "a kite at dusk"
    assert target_of("Two photos. The second one is at night.") == "The second one is at night"
