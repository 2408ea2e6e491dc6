"""The dataset card (README.md of an exported dataset), generated from the manifests.

`write_card(folder, info)` is called by the export stage with the manifest fields it is about to
write; `regenerate_card(folder)` rebuilds the card of a finished export from its manifest.json.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from megapairs import __version__
from megapairs.artifacts import manifest_file
from megapairs.export import layout
from megapairs.export.reader import iter_rows
from megapairs.export.triplets import DROP_REASONS

BAR = 30
FIELD_DOCS = [
    ("q_img", "str", "query image, path relative to this folder"),
    ("q_text", "list[str]", "instructions; with the query image they describe the target (sample one per step)"),
    ("t_img", "str", "target (positive) image"),
    ("hns", "list[str]", "hard negatives; `hns[0]` is the query image itself, then mined negatives"),
    ("key", "str", "`<q_id>_<t_id>`, unique"),
    ("q_id, t_id, hn_ids", "str, str, list[str]", "corpus ids (content hashes) of the images"),
    ("view, found_by", "str, list[str]", "the similarity view that scored the pair best / every view that found it"),
    ("similarity, score_<view>", "float", "best score / the score in each view (null where not computed)"),
    ("pair_rank", "int", "rank of the target among the query's mined targets"),
    ("description", "str", "the relation note the instructions were written from"),
    ("describer, writer, writer_used", "str", "model specs (writer_used: the one that actually wrote)"),
    ("prompt_version, annotation_status", "str", "annotation prompt version and status"),
    ("q_caption, t_caption", "str", "corpus captions of the two images"),
]


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(out)


def text_histogram(hist: dict[str, list]) -> str:
    edges, counts = hist.get("edges") or [], hist.get("counts") or []
    if not counts:
        return "(no values)"
    top = max(counts) or 1
    lines = []
    for lo, hi, n in zip(edges[:-1], edges[1:], counts):
        lines.append(f"{lo:.3f}-{hi:.3f} |{'#' * round(BAR * n / top):<{BAR}} {n}")
    return "\n".join(lines)


def plot_histograms(hists: dict[str, dict[str, list]], path: Path) -> bool:
    """A small PNG of the similarity histograms per view; False when matplotlib is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return False
    views = {v: h for v, h in hists.items() if v != "all" and h.get("counts")}
    if not views:
        return False
    fig = Figure(figsize=(6, 3), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for v, h in views.items():
        ax.stairs(h["counts"], h["edges"], label=v)
    ax.set_xlabel("pair similarity (best view)")
    ax.set_ylabel("triplets")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return True


# Licences of the built-in sources (Hugging Face licence ids); anything else is "unknown".
SOURCE_LICENSES = {"openclipart": "cc0-1.0", "samples": "other"}
SIZE_BUCKETS = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")]


def size_category(rows: int) -> str:
    """The Hugging Face `size_categories` bucket of a row count."""
    return next((name for limit, name in SIZE_BUCKETS if rows < limit), "n>1T")


def _source_name(spec: str) -> str:
    if spec in SOURCE_LICENSES or spec.startswith("icons"):
        return spec
    return Path(spec).name or "unknown"


def _source_license(spec: str) -> str:
    if spec.startswith("icons"):  # freedesktop themes: GPL, LGPL, CC BY-SA, ... per theme
        return "other"
    return SOURCE_LICENSES.get(spec, "unknown")


def card_data(info: dict[str, Any]):
    """The card's YAML metadata as `huggingface_hub.DatasetCardData`: licence, tasks, size, source
    dataset, and the data files per split (so `load_dataset(folder)` finds them)."""
    from huggingface_hub import DatasetCardData

    source = info.get("upstream_info", {}).get("corpus", {}).get("source") or ""
    specs = [str(s[0]) for s in source] if isinstance(source, list) else [str(source)]  # a mix: [[spec, n], ...]
    names = [_source_name(s) for s in specs]
    licenses = {_source_license(s) for s in specs}
    license = licenses.pop() if len(licenses) == 1 else "unknown" if "unknown" in licenses else "other"
    extra: dict[str, Any] = {}
    if license == "other":
        extra["license_details"] = ("images keep their sources' licences: bundled sample photos from scikit-image "
                                    "and scikit-learn, icon themes under their own licences, OpenClipart CC0")
    files = info.get("files") or {}
    fmts = info.get("formats") or []
    suffix = ".parquet" if "parquet" in fmts else ".jsonl" if "jsonl" in fmts else ".tar"
    data_files = [{"split": split, "path": f"{layout.split_dir(split, suffix)}/*{suffix}"} for split in layout.SPLITS
                  if any(f.endswith(suffix) for f in files.get(split, []))]
    if data_files:
        extra["configs"] = [{"config_name": "default", "data_files": data_files}]
    return DatasetCardData(
        pretty_name="MegaPairs-format triplets (megapairs export)",
        license=license,
        task_categories=["image-to-image", "image-feature-extraction"],
        size_categories=[size_category(int(info.get("rows") or 0))],
        source_datasets=names,
        annotations_creators=["machine-generated"],
        language=["en"],
        tags=["composed-image-retrieval", "megapairs"],
        **extra,
    )


def _front_matter(info: dict[str, Any]) -> str:
    return "---\n" + card_data(info).to_yaml() + "\n---\n"


def _samples(folder: Path, n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for split in layout.SPLITS:
        if len(out) >= n:
            break
        try:
            for row, _ in iter_rows(folder, split):
                out.append({**row, "_split": split})
                if len(out) >= n:
                    break
        except FileNotFoundError:
            continue
    return out


def _img(src: str, width: int = 128) -> str:
    return f'<img src="{html.escape(src)}" width="{width}">'


def render_card(info: dict[str, Any], samples: list[dict[str, Any]], figure: str | None = None) -> str:
    splits = info.get("splits", {})
    up = info.get("upstream_info", {})
    views = up.get("pairs", {}).get("views", {})
    md: list[str] = [_front_matter(info)]
    md.append("# MegaPairs-format composed image retrieval triplets\n")
    md.append(
        f"{info.get('rows', 0)} triplets ({', '.join(f'{s}: {splits.get(s, 0)}' for s in layout.SPLITS)}) over "
        f"{info.get('images', 0)} images, made by `megapairs` {__version__} (export config hash "
        f"`{info.get('config_hash')}`). Each triplet is a query image plus instructions, a target image, and hard "
        "negatives, in the field layout of the released MegaPairs data (`q_img`, `q_text`, `t_img`, `hns`).\n")

    md.append("## Files and fields\n")
    md.append(f"Images: `images/xx/<id>.{info.get('image_format', 'jpg')}`, each stored once, "
              + (f"{info['image_size']}x{info['image_size']} ({info.get('resize')})" if info.get("image_size")
                 else "original size") + ". Triplets: " + ", ".join(f"`{f}`" for f in info.get("formats", []))
              + " shards: Parquet in `train/` and `validation/` (plain Parquet datasets), JSONL in `jsonl/<split>/`, "
              "WebDataset tars in `webdataset/<split>/`. Paths in rows are relative to this folder.\n")
    md.append(_table(["field", "type", "meaning"], [list(r) for r in FIELD_DOCS]) + "\n")
    md.append("```python\nfrom datasets import load_dataset\nds = load_dataset(\"parquet\", data_files={\"train\": "
              "\"train/*.parquet\", \"validation\": \"validation/*.parquet\"})\n\n"
              "from megapairs.export import read_triplets  # absolute image paths\n"
              "for t in read_triplets(\".\", split=\"train\"):\n    ...\n```\n")

    md.append("## How it was made\n")
    md.append(f"- Pairs mined: {info.get('pairs_in', 0)}; annotation rows: {info.get('annotations_in', 0)}; "
              f"triplets kept: {info.get('rows', 0)}.")
    md.append(f"- Distinct queries: " + ", ".join(f"{s} {n}" for s, n in info.get("queries", {}).items()) + ".")
    md.append(f"- Hard negatives per triplet (including `hns[0]`, the query): "
              f"up to {info.get('num_hard_negatives')}; observed "
              + ", ".join(f"{k}: {v}" for k, v in info.get("hns_per_triplet", {}).items()) + ".")
    md.append("- Instructions per triplet: "
              + ", ".join(f"{k}: {v}" for k, v in info.get("instructions_per_triplet", {}).items()) + ".\n")

    md.append("### Dropped pairs\n")
    dropped = info.get("dropped", {})
    md.append(_table(["reason", "pairs", "meaning"],
                     [[k, v, DROP_REASONS.get(k, "")] for k, v in dropped.items()]) if dropped else "None.")
    md.append("")
    status = info.get("annotation_status", {})
    failures = {k: v for k, v in status.items() if k != "ok"}
    md.append("### Annotation outcomes\n")
    if status:
        ex = info.get("failure_examples", {})
        md.append(_table(["status", "annotations", "example reason"],
                         [[k, v, ex.get(k, "")] for k, v in status.items()]))
        if failures and not info.get("config", {}).get("include_failed"):
            md.append("\nAnnotations with a status other than `ok` were not exported.")
    else:
        md.append("No annotation rows.")
    notes = info.get("notes", {})
    if notes:
        md.append("\nOther fixes and observations: " + ", ".join(f"{k}: {v}" for k, v in notes.items()) + ".")
    md.append("")

    sp = info.get("split_policy", {})
    md.append("### Train/validation split\n")
    md.append(
        "Split by image, not by row: images linked by any triplet (query, target, negatives) form connected "
        "components, and whole components go to one split (seeded order, validation filled up to "
        f"`val_fraction` = {info.get('config', {}).get('val_fraction')}). "
        + ("The graph had too few small components, so validation was carved out of the largest one "
           "breadth-first; triplets straddling the border were dropped (`split_boundary`). "
           if sp.get("carved") else "")
        + f"Components: {sp.get('components')}, largest: {sp.get('largest_component_triplets')} triplets. "
        "No image appears in both splits.\n")

    md.append("## Models and prompts\n")
    rows = [[f"view `{v}`", f"`{s}`"] for v, s in views.items()]
    for label, key in (("describer", "describers"), ("writer (configured)", "writers"),
                       ("writer (used)", "writers_used"), ("prompt version", "prompt_versions")):
        for spec, n in info.get(key, {}).items():
            rows.append([label, f"`{spec}` ({n} triplets)"])
    md.append(_table(["role", "spec"], rows) if rows else "No model information in the manifests.")
    bands = up.get("pairs", {}).get("bands")
    if bands:
        md.append(f"\nMining bands ({up['pairs'].get('band_units', 'score')}): "
                  + ", ".join(f"{v} {b}" for v, b in bands.items()) + ".")
    md.append("")

    md.append("## Similarity of the exported pairs\n")
    hists = info.get("similarity_histograms", {})
    if figure:
        md.append(f"![similarity histogram]({figure})\n")
    summary = info.get("similarity_summary", {})
    if summary:
        md.append(_table(["best view", "triplets", "min", "median", "max"],
                         [[v, d["n"], d["min"], d["median"], d["max"]] for v, d in summary.items()]) + "\n")
    if hists.get("all"):
        md.append(f"All triplets:\n\n```\n{text_histogram(hists['all'])}\n```\n")

    if samples:
        md.append("## Samples\n")
        md.append("See `preview.html` for more.\n")
        for s in samples:
            md.append(f"**{s.get('_split')} / {s.get('key', '')}** (view `{s.get('view')}`, similarity "
                      f"{s.get('similarity') if s.get('similarity') is None else round(s['similarity'], 3)})\n")
            md.append("<table><tr><th>query</th><th>target</th><th>hard negatives</th></tr><tr>"
                      f"<td>{_img(s['q_img'])}</td><td>{_img(s['t_img'])}</td>"
                      f"<td>{' '.join(_img(h, 64) for h in (s.get('hns') or [])[1:])}</td></tr></table>\n")
            md.append("\n".join(f"- {t}" for t in s.get("q_text") or []) + "\n")

    md.append("## Configuration\n")
    md.append("```json\n" + json.dumps(info.get("config", {}), indent=2, sort_keys=True) + "\n```\n")
    md.append("## Licence and provenance\n")
    md.append(f"Card licence field: `{card_data(info).license}` (from the corpus source). Images keep the "
              "licences of their sources (see the corpus manifest); check them before redistributing. "
              "Instructions were generated by the models listed above.\n")
    return "\n".join(md)


def write_card(folder: Path | str, info: dict[str, Any], *, samples: int = 4) -> Path:
    folder = Path(folder)
    fig_rel = f"{layout.ASSETS_DIR}/similarity.png"
    has_fig = plot_histograms(info.get("similarity_histograms", {}), folder / fig_rel)
    text = render_card(info, _samples(folder, samples), fig_rel if has_fig else None)
    from huggingface_hub import DatasetCard

    path = folder / layout.CARD
    DatasetCard(text).save(path)  # parses the YAML header: a malformed card fails here, not on the Hub
    return path


def regenerate_card(folder: Path | str, *, samples: int = 4) -> Path:
    folder = Path(folder)
    info = json.loads(manifest_file(folder).read_text())
    return write_card(folder, info, samples=samples)
