"""Test-server submission files for CIRCO and CIRR, and validators that check them before upload.

CIRCO (circo.micc.unifi.it): JSON {"<query id>": [50 image ids, best first]} for every test query.
CIRR (cirr.cecs.anu.edu.au, `Test-split_server.md`): two JSON files, each with "version": "rc2" and
"metric": "recall" ({"<pairid>": [top-50 names]}) or "recall_subset" ({"<pairid>": [top-3 names]},
drawn from the query's img_set members minus the reference). At most 5 MB each.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Collection, Hashable, Mapping, Sequence

CIRCO_K = 50
CIRR_K = {"recall": 50, "recall_subset": 3}
CIRR_MAX_BYTES = 5 * 1024 * 1024


class SubmissionError(ValueError):
    """A submission file would be rejected (or mis-scored) by the test server."""


def circo_submission(rankings: Mapping[str, Sequence[int]], k: int = CIRCO_K) -> dict[str, list[int]]:
    return {str(qid): [int(x) for x in r[:k]] for qid, r in rankings.items()}


def cirr_submission(rankings: Mapping[Any, Sequence[str]], metric: str) -> dict[str, Any]:
    k = CIRR_K[metric]
    return {"version": "rc2", "metric": metric, **{str(pid): list(r[:k]) for pid, r in rankings.items()}}


def _check_list(key: str, preds: Any, k: int, allowed: Collection[Hashable] | None, kind: type) -> list[str]:
    errs = []
    if not isinstance(preds, list):
        return [f"{key}: expected a list, got {type(preds).__name__}"]
    if len(preds) != k:
        errs.append(f"{key}: {len(preds)} predictions, expected {k}")
    if not all(isinstance(p, kind) and not isinstance(p, bool) for p in preds):
        errs.append(f"{key}: predictions must be {kind.__name__}s")
    if len(set(map(str, preds))) != len(preds):
        errs.append(f"{key}: duplicate predictions")
    if allowed is not None:
        bad = [p for p in preds if p not in allowed]
        if bad:
            errs.append(f"{key}: {len(bad)} predictions outside the allowed images, e.g. {bad[:3]}")
    return errs


def _raise(errs: list[str]) -> None:
    if errs:
        more = f" (+{len(errs) - 10} more)" if len(errs) > 10 else ""
        raise SubmissionError("; ".join(errs[:10]) + more)


def validate_circo(sub: Mapping[str, Any], query_ids: Collection[Any] | None = None,
                   gallery_ids: Collection[int] | None = None, k: int = CIRCO_K) -> None:
    """Raise SubmissionError unless `sub` covers exactly `query_ids` with k distinct int image ids each."""
    errs: list[str] = []
    if query_ids is not None:
        want, have = {str(q) for q in query_ids}, set(map(str, sub))
        if want - have:
            errs.append(f"missing query ids {sorted(want - have)[:5]}")
        if have - want:
            errs.append(f"unknown query ids {sorted(have - want)[:5]}")
    gallery = set(gallery_ids) if gallery_ids is not None else None
    for key, preds in sub.items():
        errs += _check_list(str(key), preds, k, gallery, int)
    _raise(errs)


def validate_cirr(sub: Mapping[str, Any], annotations: Sequence[Mapping[str, Any]] | None = None,
                  gallery: Collection[str] | None = None, k: int | None = None) -> None:
    """Raise SubmissionError unless `sub` is a valid rc2 recall / recall_subset file.

    With `annotations` (the cap.rc2.<split>.json rows) every pairid must be present, and subset
    predictions must come from img_set members other than the reference.
    """
    errs: list[str] = []
    if sub.get("version") != "rc2":
        errs.append(f'"version" must be "rc2", got {sub.get("version")!r}')
    metric = sub.get("metric")
    if metric not in CIRR_K:
        _raise(errs + [f'"metric" must be "recall" or "recall_subset", got {metric!r}'])
    k = k or CIRR_K[metric]
    entries = {key: v for key, v in sub.items() if key not in ("version", "metric")}
    allowed: dict[str, Collection[str] | None] = {key: gallery for key in entries}
    if annotations is not None:
        by_id = {str(a["pairid"]): a for a in annotations}
        if set(by_id) - set(entries):
            errs.append(f"missing pairids {sorted(set(by_id) - set(entries))[:5]}")
        if set(entries) - set(by_id):
            errs.append(f"unknown pairids {sorted(set(entries) - set(by_id))[:5]}")
        if metric == "recall_subset":
            for key in entries.keys() & by_id.keys():
                a = by_id[key]
                allowed[key] = {m for m in a["img_set"]["members"] if m != a["reference"]}
    for key, preds in entries.items():
        errs += _check_list(key, preds, k, allowed[key], str)
    size = len(json.dumps(sub).encode())
    if size > CIRR_MAX_BYTES:
        errs.append(f"file is {size} bytes; the server accepts at most {CIRR_MAX_BYTES}")
    _raise(errs)


def validate_file(path: Path | str, benchmark: str, **kwargs: Any) -> None:
    """Validate a written submission file (`benchmark` is "circo" or "cirr")."""
    sub = json.loads(Path(path).read_text())
    {"circo": validate_circo, "cirr": validate_cirr}[benchmark](sub, **kwargs)
