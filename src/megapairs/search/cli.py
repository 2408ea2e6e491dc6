"""`megapairs index | search | serve`: build a gallery index, query it, serve the web demo.

`register(subparsers)` adds the three subcommands to an argparse parser; each sets `func`, a
callable taking the parsed args and returning an exit code. Run standalone with
`python -m megapairs.search.cli ...`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

MB = 1024 * 1024


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "index", help="embed a gallery of images into a searchable index folder",
        description="Embed every image of a gallery (a folder of images, a .txt list of paths, or a corpus "
                    "artifact folder) with a retriever into an index folder. Rerunning resumes an "
                    "interrupted build.")
    p.add_argument("--gallery", required=True, help="folder of images, .txt list of paths, or corpus artifact folder")
    p.add_argument("--model", required=True, help="retriever spec, e.g. clip:/path/to/ckpt")
    p.add_argument("--out", required=True, help="index folder to write")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--shard-size", type=int, default=2048, help="images per resumable shard")
    p.add_argument("--faiss", default="auto",
                   help="auto (flat below --ivf-threshold vectors, IVF above), flat, ivf, or a FAISS factory string")
    p.add_argument("--ivf-threshold", type=int, default=1_000_000)
    p.add_argument("--nlist", type=int, default=None, help="IVF lists (default about 4*sqrt(count))")
    p.add_argument("--nprobe", type=int, default=32, help="IVF lists probed per query")
    p.add_argument("--feature-cache", default=None, metavar="DIR",
                   help="offline retrievers: frozen image-tower outputs are read from (and added to) this folder, "
                        "so images embedded before by train, evaluate or another index are not re-embedded "
                        "(default: $MEGAPAIRS_OFFLINE_FEATURE_CACHE, else the training run's feature_cache_dir)")
    p.add_argument("--overwrite", action="store_true", help="replace an index or unfinished build in --out")
    p.set_defaults(func=cmd_index)

    p = subparsers.add_parser(
        "search", help="query an index with an image, a text instruction, or both",
        description="Top-k gallery images for a query image and/or instruction. The query image itself "
                    "(the same bytes) is left out of the hits, as in the web API.")
    p.add_argument("--index", required=True, help="index folder")
    p.add_argument("--model", default=None, help="retriever spec (default: the one that built the index)")
    p.add_argument("--image", default=None, help="query image")
    p.add_argument("--text", default=None, help="instruction or text query")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--nprobe", type=int, default=None, help="override the IVF nprobe stored in the index")
    p.add_argument("--json", action="store_true", help="print hits as JSON")
    p.set_defaults(func=cmd_search)

    p = subparsers.add_parser(
        "serve", help="web page and JSON API to search an index",
        description="Serve a small web page (upload or pick a query image, type an instruction) and "
                    "POST /api/search.")
    p.add_argument("--index", required=True, help="index folder")
    p.add_argument("--model", default=None, help="retriever spec (default: the one that built the index)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-upload-mb", type=float, default=10.0, help="largest accepted query image")
    p.set_defaults(func=cmd_serve)


def _retriever(spec: str):
    from megapairs.models.base import load_retriever

    return load_retriever(spec)


def _index_spec(index_dir: str, model: str | None) -> str:
    from megapairs.search.index import read_meta

    return model or read_meta(Path(index_dir).expanduser())["retriever"]


def _training_feature_cache(spec: str) -> str | None:
    """The `feature_cache_dir` a `ckpt:` training run used, when it kept one on disk."""
    if not spec.startswith("ckpt:"):
        return None
    folder = Path(spec[5:]).expanduser()
    for cfg in (folder / "train_config.json", folder.parent / "train_config.json"):
        if cfg.is_file():
            try:
                return (json.loads(cfg.read_text()).get("config") or {}).get("feature_cache_dir") or None
            except ValueError:
                return None
    return None


def check_faiss_kind(kind: str) -> None:
    """`--faiss` is auto, flat, ivf, or a factory string FAISS can parse (the dimension aside)."""
    if kind.strip().lower() in ("auto", "flat", "ivf"):
        return
    import faiss

    from megapairs.errors import UserError

    try:
        faiss.index_factory(64, kind.strip(), faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as e:
        if "could not parse" in str(e):
            raise UserError(f"--faiss {kind!r} is not auto, flat, ivf or a FAISS factory string",
                            hint="e.g. --faiss flat, --faiss ivf, --faiss IVF1024,Flat or --faiss HNSW32") from None


def check_port(host: str, port: int) -> None:
    """--port must be 0..65535 and free on --host."""
    import socket

    from megapairs.errors import UserError

    if not 0 <= port <= 65535:
        raise UserError(f"--port {port} is not a TCP port", hint="give 1..65535, e.g. --port 8000")
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: TIME_WAIT is no conflict
            s.bind((host, port))
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port} ({e.strerror or e})",
                        hint="pick another --port, stop the server using it, or fix --host") from None


def cmd_index(args: argparse.Namespace) -> int:
    from megapairs.search.index import GalleryIndex, IndexOptions

    options = IndexOptions(kind=args.faiss, ivf_threshold=args.ivf_threshold, nlist=args.nlist, nprobe=args.nprobe)
    check_faiss_kind(args.faiss)  # before the gallery is embedded, not after
    retriever = _retriever(args.model)
    cache = args.feature_cache or _training_feature_cache(args.model)
    if cache and hasattr(retriever, "feature_cache_dir"):
        retriever.feature_cache_dir = str(Path(cache).expanduser())
    idx = GalleryIndex.build(args.gallery, retriever, args.out, batch_size=args.batch_size,
                             shard_size=args.shard_size, options=options, overwrite=args.overwrite)
    g = idx.meta["gallery"]
    skipped = ", ".join(f"{k}: {v}" for k, v in sorted(g["skipped"].items())) or "none"
    from megapairs.output import emit

    emit(args, {"index": str(idx.folder), "indexed": len(idx), "listed": g["listed"], "dim": idx.dim,
                "faiss": idx.meta["faiss"]["factory"], "skipped": g["skipped"]},
         f"indexed {len(idx)} of {g['listed']} images into {idx.folder} "
         f"(dim {idx.dim}, faiss {idx.meta['faiss']['factory']}; skipped: {skipped})")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from megapairs.search.gallery import content_id
    from megapairs.search.index import GalleryIndex

    from megapairs.errors import UserError

    if args.image is None and args.text is None:
        raise UserError("give --image, --text, or both")
    if args.image is not None and not Path(args.image).expanduser().is_file():
        raise UserError(f"query image {args.image} does not exist")
    idx = GalleryIndex.load(args.index, _retriever(_index_spec(args.index, args.model)), nprobe=args.nprobe)
    image = str(Path(args.image).expanduser()) if args.image is not None else None
    # As the web API does: the query picture itself is never one of its own hits.
    exclude = [content_id(Path(image).read_bytes())] if image is not None else []
    hits = idx.search(images=image, text=args.text, k=args.k, exclude_ids=exclude)[0]
    if args.json:
        from megapairs.output import print_json

        print_json({"query": {"image": image, "text": args.text, "k": args.k}, "hits": [h.to_dict() for h in hits]})
    else:
        print(f"{'rank':>4}  {'score':>7}  {'id':<32}  path")
        for h in hits:
            print(f"{h.rank:>4}  {h.score:>7.4f}  {h.id:<32}  {h.path}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from megapairs.search.server import create_app
    except ImportError as e:
        from megapairs.errors import UserError

        raise UserError(f"serving needs the serve extra: pip install 'megapairs[serve]' ({e})") from None
    check_port(args.host, args.port)  # before the model loads
    retriever = _retriever(_index_spec(args.index, args.model))
    app = create_app(args.index, retriever, max_upload_bytes=int(args.max_upload_mb * MB))
    print(f"serving {args.index} on http://{args.host}:{args.port}/", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="megapairs-search")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    from megapairs.errors import run_entry

    return run_entry(args.func, args, "megapairs-search")


if __name__ == "__main__":
    sys.exit(main())
