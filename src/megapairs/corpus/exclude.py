"""`ingest.exclude`: lists of files or contents to keep out of the corpus, and the matching.

One entry per line; blank lines and `#` comments are skipped; whitespace, CR (CRLF files) and a
leading `./` are ignored. An entry is one of

- a content hash: our 32-hex content id, a 40-hex sha1 or a 64-hex sha256 (optionally written
  `sha1:HEX` / `sha256:HEX`), or a `sha1sum`/`sha256sum` output line (`HEX  path`: both the hash
  and the path are rules);
- an absolute path (`/usr/share/...`, `~/...`, `file:///...`);
- a relative path: a package-relative path as package file lists print them (`usr/share/...`), or
  a path relative to the source folder. A relative entry matches an item whose path *ends* with it
  on whole path components, so `usr/share/openclipart/svg/a/b.svg`, `svg/a/b.svg` and `a/b.svg`
  all match `/usr/share/openclipart/svg/a/b.svg`. A file named by a content id (as export names
  images: `images/ab/<id>.jpg`) also excludes that id.

Symlinks are resolved on both sides: an item that is a link to a listed file is excluded, and so
is the target of a listed link (when the listed path exists on this machine). Hashes are compared
with the source bytes and, for SVG sources, also with the stored PNG render.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from megapairs.configbase import ConfigError

HEX = re.compile(r"[0-9a-fA-F]+")
HASH_KINDS = {32: "id", 40: "sha1", 64: "sha256"}
SUM_LINE = re.compile(r"^([0-9a-fA-F]{40}|[0-9a-fA-F]{64})\s+\*?(.+)$")  # sha1sum / sha256sum output

# Rule kinds, in the order they are tried: the first one that matches is counted.
RULE_KINDS = ("id", "sha256", "sha1", "path", "relative_path", "symlink")


@dataclass(frozen=True)
class Entry:
    file: str  # the list file, as given in the config
    line: int
    text: str  # the entry as written (after stripping)


def _norm_rel(text: str) -> str:
    """'./a//b/../c' -> 'a/c'; '' when nothing is left."""
    p = os.path.normpath(text).replace(os.sep, "/")
    while p.startswith("./"):
        p = p[2:]
    return "" if p in (".", "") else p


def _suffixes(path: str) -> list[str]:
    """'/usr/share/a/b.svg' -> ['usr/share/a/b.svg', 'share/a/b.svg', 'a/b.svg', 'b.svg']."""
    parts = [p for p in path.split("/") if p]
    return ["/".join(parts[i:]) for i in range(len(parts))]


@dataclass
class Exclusions:
    """Parsed exclusion lists. `match()` says which entry (and rule kind) keeps an item out."""

    files: list[str] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    hashes: dict[str, dict[str, int]] = field(default_factory=lambda: {k: {} for k in HASH_KINDS.values()})
    absolute: dict[str, int] = field(default_factory=dict)  # normalised absolute path -> entry index
    relative: dict[str, int] = field(default_factory=dict)  # normalised relative path -> entry index
    resolved: dict[str, int] = field(default_factory=dict)  # realpath of a listed link -> entry index

    def __bool__(self) -> bool:
        return bool(self.entries)

    @property
    def wants_sha1(self) -> bool:
        return bool(self.hashes["sha1"])

    def add(self, entry: Entry, list_dir: Path) -> None:
        i = len(self.entries)
        self.entries.append(entry)
        text = entry.text
        m = SUM_LINE.match(text)
        if m:
            self._add_hash(m.group(1), i)
            text = m.group(2).strip()
        else:
            low = text.lower()
            for prefix in ("sha256:", "sha1:", "id:"):
                if low.startswith(prefix) and HEX.fullmatch(text[len(prefix):].strip() or "-"):
                    self._add_hash(text[len(prefix):].strip(), i)
                    return
            if len(text) in HASH_KINDS and HEX.fullmatch(text):
                self._add_hash(text, i)
                return
        if text.startswith("file://"):
            text = text[len("file://"):]
        text = os.path.expanduser(text)
        stem = os.path.basename(text).split(".", 1)[0]
        if len(stem) == 32 and HEX.fullmatch(stem):  # an exported image (images/ab/<id>.jpg): its id
            self.hashes["id"].setdefault(stem.lower(), i)
        if os.path.isabs(text):
            absolute = os.path.normpath(text)
            self.absolute.setdefault(absolute, i)
            self._add_link_target(absolute, i)
            return
        rel = _norm_rel(text)
        if not rel:
            return
        self.relative.setdefault(rel, i)
        # A package-relative entry names a file under /; a relative one may name a file next to the
        # list or under the working folder. Where such a file exists and is a link, its target counts.
        for base in ("/", str(list_dir), os.getcwd()):
            self._add_link_target(os.path.join(base, rel), i)

    def _add_hash(self, hexdigest: str, i: int) -> None:
        h = hexdigest.lower()
        if h.startswith("sha256:") or h.startswith("sha1:"):
            h = h.split(":", 1)[1]
        kind = HASH_KINDS.get(len(h))
        if kind is None:
            return
        self.hashes[kind].setdefault(h, i)
        if kind == "sha256":  # a full sha256 also names our 32-hex id
            self.hashes["id"].setdefault(h[:32], i)

    def _add_link_target(self, path: str, i: int) -> None:
        if os.path.lexists(path):
            real = os.path.realpath(path)
            if real != os.path.normpath(path):
                self.resolved.setdefault(real, i)

    # -- matching ---------------------------------------------------------------------------------

    def match_path(self, source: str, uri: str) -> tuple[str, int] | None:
        """By path: `source` is the item's name relative to its source, `uri` its file (or member)."""
        if not self:
            return None
        local = not uri.startswith(("tar:", "parquet:"))
        if local:
            absolute = os.path.normpath(os.path.abspath(uri))
            if absolute in self.absolute:
                return "path", self.absolute[absolute]
        for key in _suffixes(_norm_rel(source)) + (_suffixes(absolute) if local else []):
            if key in self.relative:
                return "relative_path", self.relative[key]
        if local:
            real = os.path.realpath(uri)
            if real in self.absolute:
                return "symlink", self.absolute[real]
            if real in self.resolved:
                return "symlink", self.resolved[real]
            if absolute in self.resolved:
                return "symlink", self.resolved[absolute]
            if real != absolute:
                for key in _suffixes(real):
                    if key in self.relative:
                        return "symlink", self.relative[key]
        return None

    def match_bytes(self, data: bytes, content_id: str) -> tuple[str, int] | None:
        if not self:
            return None
        if content_id in self.hashes["id"]:
            sha = hashlib.sha256(data).hexdigest()
            hit = self.hashes["sha256"].get(sha)
            return ("sha256", hit) if hit is not None else ("id", self.hashes["id"][content_id])
        if self.wants_sha1:
            hit = self.hashes["sha1"].get(hashlib.sha1(data).hexdigest())
            if hit is not None:
                return "sha1", hit
        return None

    def reason(self, kind: str, index: int, via: str = "") -> str:
        e = self.entries[index]
        return f"listed in ingest.exclude ({kind}{via}: {Path(e.file).name} line {e.line}: {e.text[:80]})"


def load_exclusions(files: list[str]) -> Exclusions:
    """Read every list file; a missing or unreadable file is a ConfigError naming it."""
    ex = Exclusions(files=list(files))
    for f in files:
        path = Path(f).expanduser()
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise ConfigError(f"ingest.exclude: cannot read {f}: {e.strerror or e}") from e
        text = raw.decode("utf-8-sig", errors="replace")
        for lineno, line in enumerate(text.splitlines(), 1):
            line = line.strip().strip("\ufeff")
            if not line or line.startswith("#"):
                continue
            ex.add(Entry(f, lineno, line), path.parent.resolve())
    return ex


def file_digest(files: list[str]) -> str:
    """One hash of the lists' contents: a changed list is a different corpus."""
    h = hashlib.sha256()
    for f in files:
        try:
            h.update(Path(f).expanduser().read_bytes())
        except OSError:
            h.update(f"unreadable:{f}".encode())
        h.update(b"\0")
    return h.hexdigest()[:16]
