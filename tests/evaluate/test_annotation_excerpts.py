"""Each benchmark's real annotation format, as a few hand-written lines (tests/evaluate/excerpts/,
written to the published schema), read by the loaders end to end; format drift fails here."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from megapairs.evaluate import evaluate

from .conftest import write_png
from .test_protocols import ConstantRetriever

EXCERPTS = Path(__file__).parent / "excerpts"
IMAGES = {
    "circo": [f"COCO2017_unlabeled/unlabeled2017/{i:012d}.jpg" for i in (8, 13, 25, 30)],
    "cirr": [f"img_raw/dev/{n}.png" for n in ("dev-9-0-img1", "dev-31-3-img1", "dev-66-2-img0", "dev-104-0-img0",
                                              "dev-245-2-img1", "dev-812-1-img0")],
    "fashioniq": [f"images/{n}.png" for n in ("B003FGW7MK", "B008BHCT58", "B00BFF1T8M", "B004ZC5PSU")],
    "genecis": [f"VG_100K/{i}.jpg" for i in (2388851, 2345678, 2401234, 2409876)]
    + [f"val2017/{i:012d}.jpg" for i in (139, 285, 632, 724)],
    "mmeb": ["eval_images/ImageNet-1K/ILSVRC2012_val_00000001.JPEG", "eval_images/ImageNet-1K/ILSVRC2012_val_00000002.JPEG",
             "eval_images/CIRR/dev-245-2-img1.png", "eval_images/CIRR/dev-104-0-img0.png",
             "eval_images/CIRR/dev-9-0-img1.png"],
}
OPTIONS = {"fashioniq": {"categories": ("dress",)}, "genecis": {"tasks": ("focus_attribute", "change_object")}}


def _folder(name: str, tmp_path: Path) -> Path:
    root = tmp_path / name
    shutil.copytree(EXCERPTS / name, root)
    for k, rel in enumerate(IMAGES[name]):
        write_png(root / rel, seed=k, size=(300, 260))  # PIL reads PNG bytes whatever the extension
    return root


@pytest.mark.parametrize("name,queries,headline", [("circo", 2, "mAP@5"), ("cirr", 2, "Rsubset@1"),
                                                  ("fashioniq", 2, "avg/R@10"), ("genecis", 2, "avg/R@1"),
                                                  ("mmeb", 3, "Overall")])
def test_official_format_excerpt_is_read(name: str, queries: int, headline: str, retriever, tmp_path: Path):
    root = _folder(name, tmp_path)
    opts = {"cache_dir": str(tmp_path / "cache"), "progress": False, **OPTIONS.get(name, {})}
    res = evaluate(name, root, retriever, opts)
    assert res["num_queries"] == queries and headline in res["metrics"]
    if name == "circo":  # gt_img_ids [30, 30]: the official divisor min(len(gt), k) = 2
        assert res["metrics"]["mAP@5"] <= 100.0
    if name == "cirr":  # the soft labels (1.0 / 0.5 / -1.0) are read
        assert "soft/R@1" in res["metrics"]
    const = evaluate(name, root, ConstantRetriever(), {**opts, "cache_dir": str(tmp_path / "c2")})
    if name == "circo":
        # all ties -> gallery order 8, 13, 25, 30; q1 (reference 25, kept): AP@5 = (1/4) / min(2, 5)
        assert const["metrics"]["mAP@5"] == pytest.approx(100 * ((1 / 2 + 2 / 3 + 3 / 4) / 3 + (1 / 4) / 2) / 2)
