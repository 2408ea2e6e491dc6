"""Captions from an SVG's Dublin Core metadata (OpenClipart: title, keywords, description)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

DC = "{http://purl.org/dc/elements/1.1/}"
RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
_NUMBERED = re.compile(r"[\s_-]*\d+$")
_JUNK_WORDS = {"hash", "clip art", "clipart", "image", "svg", "media", "public domain"}
_JUNK_TEXT = re.compile(r"hash\(0x[0-9a-f]+\)|https?://\S+|\S+@\S+\.\w+", re.I)


def svg_metadata(data: bytes) -> dict[str, Any]:
    """The Dublin Core fields, cleaned: {title, keywords, description}; {} when there are none.
    Stored in the corpus `meta` column, so describers can compare fields instead of parsing captions."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError:
        return {}
    title = next((t.text for t in root.iter(f"{DC}title") if t.text and t.text.strip()), "") or ""
    keywords: list[str] = []
    for subject in root.iter(f"{DC}subject"):
        for li in subject.iter(f"{RDF}li"):
            word = (li.text or "").strip().lower()
            if (word and word not in keywords and word not in _JUNK_WORDS and not word.isdigit()
                    and not _JUNK_TEXT.search(word)):
                keywords.append(word)
    desc = next((d.text for d in root.iter(f"{DC}description") if d.text and d.text.strip()), "") or ""
    title = _NUMBERED.sub("", title.replace("_", " ").strip())
    desc = " ".join(_JUNK_TEXT.sub("", desc).split())[:200].strip(" .")
    if len(desc.split()) < 2:  # what is left of "by someone@example.org"
        desc = ""
    meta = {"title": title, "keywords": keywords, "description": desc}
    return {k: v for k, v in meta.items() if v}


def caption_from_metadata(meta: dict[str, Any]) -> str:
    """'title: keyword, keyword. description'; '' when there is no metadata."""
    title, keywords, desc = meta.get("title", ""), meta.get("keywords", []), meta.get("description", "")
    parts = title
    if keywords:
        parts = f"{parts}: {', '.join(keywords[:8])}" if parts else ", ".join(keywords[:8])
    if desc and desc.lower() != title.lower():
        parts = f"{parts}. {desc}" if parts else desc
    return parts.strip()


def svg_caption(data: bytes) -> str:
    """'title: keyword, keyword. description' from the metadata, '' when there is none."""
    return caption_from_metadata(svg_metadata(data))
