"""The static search page: elements marked `hidden` stay hidden whatever display the CSS gives them
(a `#picked { display: flex }` rule used to show an empty, broken preview image on load)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from megapairs.search.server import STATIC


class _Hidden(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hidden: list[tuple[str, set[str]]] = []  # (id, classes) of elements with `hidden`

    def handle_starttag(self, tag, attrs) -> None:
        a = dict(attrs)
        if "hidden" in a:
            self.hidden.append((a.get("id") or "", set((a.get("class") or "").split())))


def css_rules(css: str) -> list[tuple[str, str]]:
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    css = re.sub(r"@media[^{]*\{((?:[^{}]*\{[^}]*\})*)\s*\}", r"\1", css)  # flatten media blocks
    return [(sel.strip(), body) for sel, body in re.findall(r"([^{}]+)\{([^}]*)\}", css)]


def test_hidden_elements_stay_hidden_on_load():
    page = _Hidden()
    page.feed((STATIC / "index.html").read_text())
    assert page.hidden, "the page marks some elements hidden until used"
    rules = css_rules((STATIC / "style.css").read_text())
    hides = any(sel.replace(" ", "") in ("[hidden]", "*[hidden]") and re.search(r"display:\s*none\s*!important", body)
                for sel, body in rules)
    for el_id, classes in page.hidden:
        shown_by = [sel for sel, body in rules if re.search(r"(^|[\s;])display:\s*(?!none)", body)
                    for part in sel.split(",")
                    if part.strip() == f"#{el_id}" or part.strip().lstrip(".") in classes]
        if shown_by:
            assert hides, f"#{el_id} is marked hidden but {shown_by} give it a display: it shows on load"
