"""Every `megapairs ...` command in README.md and docs/*.md is accepted by the CLI as written: its
flags parse, its dotted overrides name real config fields with valid values, and `--help` of its
command runs. (A real run needs data and models that are not here; the flags and the config are
what goes stale.)"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from megapairs.cli import STAGE_SECTION, _stage_overrides, build_parser, main

ROOT = Path(__file__).parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PIPELINE = {"run", *STAGE_SECTION}


def doc_commands() -> list[tuple[str, str]]:
    """(doc:line, command) for each `megapairs` line in a fenced block, continuation lines joined.
    Synopsis lines with [optional] or UPPERCASE placeholders are left out."""
    out = []
    for doc in DOCS:
        lines = doc.read_text().splitlines()
        fenced = False
        i = 0
        while i < len(lines):
            line = lines[i]
            if line.lstrip().startswith("```"):
                fenced = not fenced
            elif fenced and re.match(r"^\s*(\S*/)?megapairs\s", line):
                start, text = i + 1, line
                while text.rstrip().endswith("\\") and i + 1 < len(lines):
                    i += 1
                    text = text.rstrip()[:-1] + " " + lines[i].strip()
                text = re.sub(r"\s+#.*$", "", text.strip()).split(" | ")[0]
                if not re.search(r"\[-|\[[a-z]+\.|\bRUN\b|\bDIR\b|\bSPEC\b|\bDATASET\b|\.\.\.", text):
                    out.append((f"{doc.name}:{start}", text))
            i += 1
    return out


COMMANDS = doc_commands()


def test_the_docs_have_commands() -> None:
    docs = {where.split(":")[0] for where, _ in COMMANDS}
    assert {"README.md", "export.md", "evaluate.md", "train.md", "search.md"} <= docs, docs


@pytest.mark.parametrize("where, command", COMMANDS, ids=[w for w, _ in COMMANDS])
def test_doc_command_is_accepted(where, command, monkeypatch) -> None:
    argv = shlex.split(command.replace("$VAL", "val.parquet"))
    argv = argv[argv.index(next(a for a in argv if a.endswith("megapairs"))) + 1:]
    args = build_parser().parse_args(argv)  # SystemExit(2) on an unknown flag
    if args.command in PIPELINE:
        from megapairs.config import load_config

        preset = args.preset or "demo"
        load_config(preset, None, _stage_overrides(args)).check_specs()  # unknown field, bad value or model spec
    elif args.command == "train":
        from megapairs.train.cli import build_config

        build_config(args)
    with pytest.raises(SystemExit) as e:
        main([args.command, "--help"])
    assert e.value.code == 0, where
