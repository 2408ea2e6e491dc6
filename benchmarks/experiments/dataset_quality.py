"""Quality of a synthesised set: share of pairs with a stated change, kinds of change, distinct
instructions, and N random triplets quoted with their captions (Markdown on stdout).

    python benchmarks/experiments/dataset_quality.py --run runs/demo [-n 20] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from megapairs.annotate.validate import norm
from megapairs.artifacts import manifest_file


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True)
    ap.add_argument("-n", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    run = Path(args.run)
    ann = pq.read_table(sorted((run / "annotations").glob("part-*.parquet"))).to_pylist()
    corpus = {r["id"]: r for r in pq.read_table(sorted((run / "corpus").glob("part-*.parquet")),
                                                  columns=["id", "caption", "uri"]).to_pylist()}
    pairs = json.loads(manifest_file(run / "pairs").read_text())
    ok = [r for r in ann if r["status"] == "ok"]
    stated = [r for r in ok if "Change:" in (r["description"] or "")]
    texts = [t for r in ok for t in r["instructions"]]
    kinds = Counter(k.removeprefix("kept_") for k, v in (pairs.get("changes") or {}).items() if k.startswith("kept_")
                    for _ in range(v))
    print(f"- pairs mined: {len(ann)}; with a stated change: {len(stated)} ({100 * len(stated) / max(len(ann), 1):.1f} %); "
          f"status: {dict(Counter(r['status'] for r in ann))}")
    if pairs.get("changes"):
        c = pairs["changes"]
        print(f"- mining judged {c['candidates']} in-band candidates, {c['describable_candidates']} describable; "
              f"kept by kind of change: {dict(kinds.most_common())}")
    normed = {norm(t) for t in texts}  # case and punctuation do not make a new request
    print(f"- instructions: {len(texts)}, distinct {len(set(texts))} ({100 * len(set(texts)) / max(len(texts), 1):.1f} %), "
          f"{len(normed)} ignoring case and punctuation; per triplet {len(texts) / max(len(ok), 1):.1f}")
    print(f"\n{args.n} random triplets (seed {args.seed}):\n")
    print("| # | query caption | target caption | stated change | instructions |")
    print("|---|---|---|---|---|")
    for i, r in enumerate(random.Random(args.seed).sample(ok, min(args.n, len(ok))), 1):
        q, t = corpus[r["query_id"]], corpus[r["target_id"]]
        change = r["description"][r["description"].find("Change:") + 8:].rstrip(".")
        cell = lambda c, u: f"{(c or '')[:60]} (`{Path(u.split('::')[0]).name[:40]}`)"  # noqa: E731
        print(f"| {i} | {cell(q['caption'], q['uri'])} | {cell(t['caption'], t['uri'])} | {change} | "
              f"{' / '.join(r['instructions'][:3])} |")


if __name__ == "__main__":
    main()
