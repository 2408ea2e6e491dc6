"""The `icons` source: installed freedesktop icon themes (/usr/share/icons/<theme>/...).

Spec: `icons` (every installed theme that holds icons) or `icons:ENTRY,ENTRY,...` where an entry is
a theme by folder name (`gnome-brave`), optionally one context (`Papirus/places`, `*` for all) and
name patterns (`Papirus/places/folder-*-music|folder-*-pictures`, shell-style, `|` between), or a
theme folder anywhere (`/path/to/theme`).

Per theme, each icon name (within its context) is taken once, at one size: a scalable SVG when the
theme has one, else the largest raster at most 256 px. Names that are links to the same file (the
aliases every theme ships, `back` -> `go-previous`) are one item, listed under the name of the file
itself; files that resolve into another theme's folder belong to that theme and are left out here.
Exact byte duplicates across themes collapse later, like any duplicate (first theme listed wins).

Each item carries `meta` (stored in the corpus `meta` column): icon_name, readable_name, theme,
theme_name, theme_colour, theme_variant, colour, context, size, scalable, aliases, base_name (the name
without colour words) and family (the GNOME-Colors seven share one): icons with equal family, context
and base_name differ in colour only.
"""

from __future__ import annotations

import configparser
import fnmatch
import os
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ICON_DIRS = [Path("/usr/share/icons")]
ICON_EXT = (".svg", ".png")
MAX_RASTER = 256

# The GNOME-Colors family: the same icons in seven colours. Colour words checked on the pixels of
# each theme's folder.svg (median hue of saturated pixels: 213, 0, 85, 30, 294, 30 (dull), 353 (light)).
THEME_COLOURS = {"gnome-brave": "blue", "gnome-wine": "red", "gnome-wise": "green", "gnome-human": "orange",
                 "gnome-noble": "purple", "gnome-dust": "brown", "gnome-illustrious": "pink"}
THEME_VARIANTS = ("dark", "light")
# Colour words inside icon names (Papirus folder colours: folder-red-music).
NAME_COLOURS = {"black": "black", "blue": "blue", "bluegrey": "blue grey", "brown": "brown",
                "carmine": "carmine", "cyan": "cyan", "darkcyan": "dark cyan", "deeporange": "deep orange",
                "gray": "grey", "green": "green", "grey": "grey", "indigo": "indigo", "magenta": "magenta",
                "orange": "orange", "palebrown": "pale brown", "paleorange": "pale orange", "pink": "pink",
                "purple": "purple", "red": "red", "teal": "teal", "violet": "violet", "white": "white",
                "yellow": "yellow"}
_DROP_TOKENS = {"gtk", "stock", "gnome", "fs", "mime", "x"}
_WORDS = {"ltr": "left-to-right", "rtl": "right-to-left", "prefs": "preferences", "img": "image",
          "doc": "document", "dir": "directory", "btn": "button"}
_LEVEL = re.compile(r"^\d{3}$")


class IconSourceError(ValueError):
    """An icons spec names a theme that is not installed, or a folder that is no icon theme."""


@dataclass
class ThemeDir:
    path: str  # relative to the theme folder, e.g. "scalable/places"
    size: int  # nominal Size= (px at scale 1)
    scale: int
    scalable: bool  # Type=Scalable: an SVG here may be drawn up to max_size
    max_size: int
    context: str  # the directory's last component: apps, places, actions, status, devices...


@dataclass
class Theme:
    name: str  # folder name (gnome-brave)
    root: Path
    display: str  # Name= of index.theme
    dirs: list[ThemeDir] = field(default_factory=list)
    context_filter: str | None = None
    name_patterns: list[str] = field(default_factory=list)


def _int(value: str | None, default: int) -> int:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return default


def read_theme(root: Path, context_filter: str | None = None) -> Theme:
    """Parse index.theme (or, without one, guess size/context from `<size>/<context>` folders)."""
    root = Path(root)
    index = root / "index.theme"
    theme = Theme(root.name, root, root.name, context_filter=context_filter)
    if index.is_file():
        cp = configparser.ConfigParser(interpolation=None, strict=False)
        cp.optionxform = str  # keep key case
        try:
            cp.read_string(index.read_text(errors="replace"))
        except configparser.Error as e:
            raise IconSourceError(f"{index}: not a readable index.theme ({e})") from e
        head = cp["Icon Theme"] if cp.has_section("Icon Theme") else {}
        theme.display = head.get("Name", root.name)
        names = [d.strip() for key in ("Directories", "ScaledDirectories")
                 for d in head.get(key, "").split(",") if d.strip()]
        for d in dict.fromkeys(names):
            sec = cp[d] if cp.has_section(d) else {}
            size = _int(sec.get("Size"), _guess_size(d))
            kind = sec.get("Type", "Threshold").strip().lower()
            scalable = kind == "scalable" or "scalable" in d.split("/")[0]
            max_size = max(size, _int(sec.get("MaxSize"), size)) if scalable else size
            theme.dirs.append(ThemeDir(d, size, _int(sec.get("Scale"), _guess_scale(d)), scalable, max_size,
                                       d.rstrip("/").split("/")[-1].lower()))
    else:
        for size_dir in sorted(p for p in root.iterdir() if p.is_dir()):
            for ctx in sorted(p for p in size_dir.iterdir() if p.is_dir()):
                d = f"{size_dir.name}/{ctx.name}"
                size, scalable = _guess_size(d), "scalable" in size_dir.name
                theme.dirs.append(ThemeDir(d, size, _guess_scale(d), scalable, MAX_RASTER if scalable else size,
                                           ctx.name.lower()))
    return theme


def _guess_size(d: str) -> int:
    m = re.match(r"(\d+)x\d+", d)
    return int(m.group(1)) if m else 0


def _guess_scale(d: str) -> int:
    m = re.match(r"\d+x\d+@(\d+)", d)
    return int(m.group(1)) if m else 1


def installed_themes(dirs: list[Path] | None = None) -> list[Path]:
    """Theme folders with an index.theme that lists icon directories, sorted by name."""
    out: dict[str, Path] = {}
    for base in dirs or ICON_DIRS:
        if not base.is_dir():
            continue
        for p in sorted(base.iterdir()):
            idx = p / "index.theme"
            if p.name not in out and idx.is_file() and "Directories" in idx.read_text(errors="replace"):
                out[p.name] = p
    return [out[k] for k in sorted(out, key=str.lower)]


def parse_spec(spec: str, dirs: list[Path] | None = None) -> list[Theme]:
    """`icons` / `icons:a,b/places,/path/theme` -> themes, in the order given."""
    if spec == "icons":
        found = installed_themes(dirs)
        if not found:
            where = ", ".join(str(d) for d in dirs or ICON_DIRS)
            raise IconSourceError(f"no icon themes installed in {where}: apt-get install gnome-brave-icon-theme "
                                  "papirus-icon-theme (or run scripts/setup.sh)")
        return [read_theme(p) for p in found]
    body = spec.split(":", 1)[1]
    themes = []
    for entry in (e.strip() for e in body.split(",")):
        if not entry:
            continue
        pattern = ""
        if entry.startswith(("/", "~", ".")):
            path, ctx = Path(entry).expanduser(), None
        else:
            name, _, rest = entry.partition("/")
            ctx, _, pattern = rest.partition("/")
            ctx = "" if ctx == "*" else ctx
            path = next((base / name for base in dirs or ICON_DIRS if (base / name).is_dir()), None)
            if path is None:
                have = ", ".join(p.name for p in installed_themes(dirs)) or "none"
                raise IconSourceError(f"icon theme {name!r} is not installed (installed: {have}); "
                                      f"apt-get install {name}-icon-theme, or give a theme folder")
        if not path.is_dir():
            raise IconSourceError(f"icon theme folder {path} does not exist")
        theme = read_theme(path, ctx.lower() if ctx else None)
        theme.name_patterns = [p for p in pattern.split("|") if p]
        themes.append(theme)
    if not themes:
        raise IconSourceError(f"{spec!r}: name at least one theme after 'icons:'")
    return themes


def _rank(d: ThemeDir, filename: str) -> tuple[int, int]:
    """Smaller is preferred: an SVG in a scalable folder (largest first), then any other file at most
    256 px (largest first; an SVG in a fixed-size folder is drawn for that size), then larger ones."""
    if d.scalable and filename.lower().endswith(".svg"):
        return (0, -d.max_size * d.scale)
    px = d.size * d.scale
    return (1, -px) if px <= MAX_RASTER else (2, px)


def _icon_name(filename: str) -> str:
    stem = filename.rsplit(".", 1)[0]
    return stem[: -len(".symbolic")] if stem.endswith(".symbolic") else stem


def theme_icons(theme: Theme, include_symbolic: bool = False) -> list[dict[str, Any]]:
    """One record per distinct icon file of the theme: {path, name, context, dir, aliases}."""
    best: dict[tuple[str, str], tuple[tuple[int, int], str, ThemeDir]] = {}
    for d in theme.dirs:
        if theme.context_filter and d.context != theme.context_filter:
            continue
        folder = theme.root / d.path
        if not folder.is_dir():
            continue
        for f in sorted(os.listdir(folder)):
            if not f.lower().endswith(ICON_EXT):
                continue
            name = _icon_name(f)
            if name.endswith("-symbolic") and not include_symbolic:
                continue
            if theme.name_patterns and not any(fnmatch.fnmatchcase(name, p) for p in theme.name_patterns):
                continue
            key, rank = (d.context, name), _rank(d, f)
            if key not in best or rank < best[key][0]:
                best[key] = (rank, str(folder / f), d)
    root_real = os.path.realpath(theme.root)
    by_file: dict[str, list[tuple[str, str, ThemeDir, str]]] = defaultdict(list)
    for (ctx, name), (_, path, d) in sorted(best.items()):
        if not os.path.isfile(path):  # a dangling link
            continue
        real = os.path.realpath(path)
        if not real.startswith(root_real + os.sep):
            continue  # the file lives in another theme (Papirus-Dark/64x64 -> Papirus/64x64)
        by_file[real].append((name, ctx, d, path))
    out = []
    for real, names in by_file.items():
        own = _icon_name(os.path.basename(real))
        names.sort(key=lambda t: (t[0] != own, os.path.islink(t[3]), t[0]))
        name, ctx, d, path = names[0]
        out.append({"path": path, "real": real, "name": name, "context": ctx, "dir": d,
                    "aliases": sorted({n for n, *_ in names[1:]} - {name})})
    out.sort(key=lambda r: (r["context"], r["name"]))
    return out


def base_name(name: str) -> str:
    """The name without its colour words: 'folder-red-music' -> 'folder-music'."""
    return "-".join(t for t in re.split(r"[-_]+", name.lower()) if t and t not in NAME_COLOURS)


def theme_family(theme: str) -> str:
    """Themes that draw the same icons in other colours share a family (the GNOME-Colors seven)."""
    return "gnome-colors" if theme.lower() in THEME_COLOURS else theme


def name_colour(name: str) -> str | None:
    for tok in re.split(r"[-_]+", name.lower()):
        if tok in NAME_COLOURS:
            return NAME_COLOURS[tok]
    return None


def readable_name(name: str) -> str:
    """'go-up' -> 'go up arrow', 'folder-red-music' -> 'music folder' (colour kept apart),
    'battery-050-charging' -> 'battery 50% charging', 'gtk-go-back-rtl' -> 'go back right-to-left arrow'."""
    toks = [t for t in re.split(r"[-_\s]+", name.lower()) if t]
    while len(toks) > 1 and toks[0] in _DROP_TOKENS:
        toks = toks[1:]
    toks = [t for t in toks if t not in NAME_COLOURS and t != "x"] or toks
    toks = [f"{int(t)}%" if _LEVEL.match(t) else _WORDS.get(t, t) for t in toks]
    if toks[0] == "go" and len(toks) > 1:
        toks.append("arrow")
    elif toks[0] in ("folder", "emblem") and len(toks) > 1:
        toks = toks[1:] + [toks[0]]
    return " ".join(toks)


def theme_words(theme: str) -> str:
    return " ".join(t for t in re.split(r"[-_\s]+", theme.lower()) if t)


def icon_caption(meta: dict[str, Any]) -> str:
    """'blue go up arrow icon, gnome brave theme' (the colour only where one is known)."""
    colour = meta.get("colour")
    name = f"{colour} {meta['readable_name']}" if colour else meta["readable_name"]
    return f"{name} icon, {theme_words(meta['theme'])} theme"


def list_icons(spec: str, dirs: list[Path] | None = None, include_symbolic: bool = False) -> list[dict[str, Any]]:
    """Source items (uri, source, label, caption, meta) for an icons spec."""
    items = []
    seen: set[str] = set()  # files already listed by an earlier theme in the spec
    for theme in parse_spec(spec, dirs):
        tcolour = THEME_COLOURS.get(theme.name.lower())
        variant = next((v for v in THEME_VARIANTS if v in theme.name.lower().split("-")), None)
        for ic in theme_icons(theme, include_symbolic):
            if ic["real"] in seen:
                continue
            seen.add(ic["real"])
            d: ThemeDir = ic["dir"]
            scalable = d.scalable and ic["path"].lower().endswith(".svg")
            meta = {"kind": "icon", "icon_name": ic["name"], "readable_name": readable_name(ic["name"]),
                    "theme": theme.name, "theme_name": theme.display, "theme_colour": tcolour,
                    "theme_variant": variant, "colour": name_colour(ic["name"]) or tcolour,
                    "context": ic["context"], "size": d.size * d.scale, "scalable": scalable,
                    "aliases": ic["aliases"], "base_name": base_name(ic["name"]),
                    "family": theme_family(theme.name)}
            rel = os.path.relpath(ic["path"], theme.root.parent)
            items.append({"uri": ic["path"], "source": rel, "label": ic["context"],
                          "caption": icon_caption(meta), "meta": meta})
    return items


# -- series: what the icons offer as named changes --------------------------------------------------

DIRECTION_PAIRS = [("up", "down"), ("left", "right"), ("next", "previous"), ("forward", "back"),
                   ("forward", "backward"), ("top", "bottom"), ("first", "last"), ("ltr", "rtl"),
                   ("in", "out"), ("north", "south"), ("east", "west")]
STATE_SETS = [("empty", "low", "medium", "high", "full"), ("muted", "low", "medium", "high"),
              ("none", "weak", "ok", "good", "excellent"), ("on", "off"), ("open", "closed"),
              ("locked", "unlocked"), ("connected", "disconnected"), ("online", "offline", "away", "busy"),
              ("enabled", "disabled"), ("charging", "charged"), ("start", "stop", "pause")]
STATE_ADDONS = {"open", "charging", "muted", "locked", "disabled", "off", "full", "empty", "new", "error",
                "warning", "important", "symbolic"}


def _tokens(name: str) -> tuple[str, ...]:
    return tuple(t for t in re.split(r"[-_]+", name.lower()) if t)


def series_counts(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Count the named changes among listed icons (their `meta`):
    colour series (one name in >= 2 colours within a theme family, across the GNOME-Colors themes
    or by a colour word in the name),
    direction pairs (go-up / go-down, within a theme) and state pairs (battery-empty / -full,
    folder / folder-open, battery-050 / battery-050-charging, within a theme)."""
    metas = [it["meta"] for it in items if it.get("meta", {}).get("kind") == "icon"]
    colours: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    by_theme: dict[str, set[tuple[str, ...]]] = defaultdict(set)
    for m in metas:
        toks = _tokens(m["icon_name"])
        if m.get("colour"):
            colours[(theme_family(m["theme"]), m["context"], base_name(m["icon_name"]))].add(m["colour"])
        by_theme[m["theme"]].add(toks)
    direction = {frozenset(p) for p in DIRECTION_PAIRS}
    levels = {frozenset((a, b)) for s in STATE_SETS for a in s for b in s if a != b}
    n_dir = n_state = 0
    for names in by_theme.values():
        swapped: dict[tuple[str, ...], list[str]] = defaultdict(list)  # one token replaced by '*'
        for n in names:
            for i in range(len(n)):
                swapped[n[:i] + ("*",) + n[i + 1:]].append(n[i])
            for i in range(len(n)):  # n with one token more than a listed name: an added state
                if len(n) > 1 and n[i] in STATE_ADDONS and n[:i] + n[i + 1:] in names:
                    n_state += 1
        for toks in swapped.values():
            for a in range(len(toks)):
                for b in range(a + 1, len(toks)):
                    x, y = toks[a], toks[b]
                    if frozenset((x, y)) in direction:
                        n_dir += 1
                    elif frozenset((x, y)) in levels or (_LEVEL.match(x) and _LEVEL.match(y)):
                        n_state += 1
    groups = [c for c in colours.values() if len(c) >= 2]
    return {"icons": len(metas), "colour_series": len(groups), "colour_series_icons": sum(len(c) for c in groups),
            "direction_pairs": n_dir, "state_pairs": n_state}


def main(argv: list[str] | None = None) -> int:
    """`python -m megapairs.corpus.icons [SPEC]`: icons per theme and the series they offer."""
    spec = (argv if argv is not None else sys.argv[1:]) or ["icons"]
    try:
        items = list_icons(spec[0])
    except IconSourceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    per_theme: dict[str, int] = defaultdict(int)
    for it in items:
        per_theme[it["meta"]["theme"]] += 1
    for theme, n in per_theme.items():
        print(f"{theme:24s} {n:6d}")
    for k, v in series_counts(items).items():
        print(f"{k:24s} {v:6d}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
