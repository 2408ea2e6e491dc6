"""Named query templates per benchmark. The chosen name and format go into every result.

Defaults follow MegaPairs/BGE-VL where it published them (CIRCO, FashionIQ); CIRR and GeneCIS
templates are unpublished (MegaPairs issue #34), so the defaults there are the plain official text.
A template value is a `str.format` string, or (GeneCIS) a mapping task -> format string.
"""

from __future__ import annotations

from typing import Any, Union

from megapairs.configbase import ConfigError

Template = Union[str, dict[str, str]]

TEMPLATES: dict[str, dict[str, Template]] = {
    "circo": {
        # eval/data/circo_query.jsonl of the MegaPairs repo (all 800 rows)
        "megapairs": "Find a picture that also {shared_concept}, but {relative_caption}.",
        "magiclens": "find {shared_concept} but {relative_caption}",
        "caption": "{relative_caption}",
    },
    "cirr": {"caption": "{caption}"},
    "fashioniq": {
        "megapairs": "{c1}, and {c2}",  # eval/data/fashioniq_*.jsonl of the MegaPairs repo
        "magiclens": "{c1} and {c2}",
        "first": "{c1}",
    },
    "genecis": {
        "condition": "{condition}",  # what the official GeneCIS code feeds its text encoder
        # Our own wording; the paper only says "derived from the condition keyword".
        "describe": {
            "focus_attribute": "Find an object with the same {condition}.",
            "change_attribute": "Find the same kind of object, but {condition}.",
            "focus_object": "Find an image with the same {condition}.",
            "change_object": "Find a similar image that also has a {condition}.",
        },
    },
    # MMEB rows already carry their task instruction; the Phi-3-V image token is removed.
    "mmeb": {"official": "{text}"},
    "triplets": {"instruction": "{instruction}"},
}

DEFAULT_TEMPLATE = {"circo": "megapairs", "cirr": "caption", "fashioniq": "megapairs",
                    "genecis": "condition", "mmeb": "official", "triplets": "instruction"}


def resolve(benchmark: str, name: str | None) -> tuple[str, Template]:
    """(name, format) for `name`; None -> the benchmark default; a string with "{" is a custom format."""
    table = TEMPLATES[benchmark]
    if name is None:
        name = DEFAULT_TEMPLATE[benchmark]
    if "{" in name:
        return "custom", name
    if name not in table:
        raise ConfigError(f"unknown {benchmark} template {name!r}; known: {', '.join(sorted(table))} "
                          "(or pass a format string such as '{caption}')")
    return name, table[name]


def fill(template: Template, task: str | None = None, **fields: Any) -> str:
    fmt = template[task] if isinstance(template, dict) else template  # type: ignore[index]
    try:
        return fmt.format(**fields).strip()
    except KeyError as e:
        raise ConfigError(f"template {fmt!r} uses {e}, but only {sorted(fields)} are available") from None


def describe(name: str, template: Template) -> dict[str, Any]:
    return {"name": name, "format": template}
