"""The embed stage: every usable corpus image decoded once, fed to all image encoders, captions to
the text encoder. One embed shard per corpus shard (its `ok` rows, in order).

Output per shard: `part-NNNNN.parquet` (id) and `.vectors/<view>/part-NNNNN.npy` (N, D) L2-normalised.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from megapairs.artifacts import Artifact, write_npy, write_table
from megapairs.embed.backends import build_image_encoder, build_text_encoder
from megapairs.embed.backends.base import ImageEncoder, TextEncoder, pick_device
from megapairs.embed.backends.preprocess import Preprocess
from megapairs.embed.config import VIEW_MODALITY, EmbedConfig
from megapairs.embed.decode import Decoder, Geometry, stack_batches
from megapairs.embed.store import vector_path, vector_relpath
from megapairs.progress import advance
from megapairs.stages import ShardTask, Stage

EMPTY_CAPTION = "an image"  # what the text view embeds for a row with no caption


class Encoders:
    """All views' encoders, built once per worker; images grouped by preprocessing."""

    def __init__(self, config: EmbedConfig) -> None:
        self.device = pick_device(config.device)
        self.image: dict[str, ImageEncoder] = {}
        self.text: dict[str, TextEncoder] = {}
        with contextlib.redirect_stdout(io.StringIO()):  # some packaged loaders print on load
            for view, spec in config.views().items():
                if VIEW_MODALITY[view] == "image":
                    self.image[view] = build_image_encoder(spec, device=self.device)
                else:
                    self.text[view] = build_text_encoder(spec, device=self.device)
        self.groups: dict[str, list[str]] = {}
        for view, enc in self.image.items():
            self.groups.setdefault(enc.preprocess_key, []).append(view)
        self.pre: dict[str, Preprocess] = {key: self.image[views[0]].pre for key, views in self.groups.items()}

    def dims(self) -> dict[str, int]:
        return {v: e.dim for v, e in {**self.image, **self.text}.items()}

    @property
    def geometries(self) -> dict[str, Geometry]:
        """What the decode workers need (picklable, no model): resize + crop per preprocessing key."""
        return {key: pre.geometry for key, pre in self.pre.items()}

    def preprocess(self, images: list) -> dict[str, torch.Tensor]:
        """Decoded images -> one normalised (B, 3, H, W) batch per preprocessing key, on the device."""
        return self.normalize(stack_batches([{k: g(im) for k, g in self.geometries.items()} for im in images]))

    def normalize(self, batches: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        """uint8 (B, H, W, 3) batches -> float32 (B, 3, H, W) on the encoders' device (converted there)."""
        return {key: self.pre[key].normalize(torch.from_numpy(x), self.device) for key, x in batches.items()}

    def encode(self, batches: dict[str, torch.Tensor], captions: list[str]) -> dict[str, np.ndarray]:
        """Normalised batches (from `normalize` / `preprocess`) + captions -> (B, D) per view."""
        out = {}
        for key, views in self.groups.items():
            for v in views:
                out[v] = self.image[v].encode(batches[key]).numpy()  # (B, D)
        for v, enc in self.text.items():
            out[v] = enc.encode_text([c or EMPTY_CAPTION for c in captions]).numpy()  # (B, D)
        return out


def ok_rows(corpus: Artifact, shard: int, columns: list[str]) -> pa.Table:
    table = corpus.read_shard(shard, columns=columns + ["status"])
    return table.filter(pc.equal(table.column("status"), "ok"))


class EmbedStage(Stage):
    name = "embeddings"
    kind = "embeddings"
    inputs = ("corpus",)
    config: EmbedConfig

    def plan(self) -> list[ShardTask]:
        corpus = self.input_artifact("corpus")
        tasks = []
        for i in corpus.shard_indices():
            n = ok_rows(corpus, i, ["id"]).num_rows
            tasks.append(ShardTask(i, i, n))
        return tasks

    def make_worker(self):
        encoders = Encoders(self.config)
        corpus = self.input_artifact("corpus")
        art = self.output()
        dtype = np.float16 if self.config.dtype == "float16" else np.float32
        decoder = Decoder(self.config, encoders.geometries, encoders.device)

        def work(task: ShardTask) -> None:
            rows = ok_rows(corpus, task.payload, ["id", "uri", "caption", "image_bytes"]).to_pylist()
            outs: dict[str, list[np.ndarray]] = {v: [] for v in encoders.dims()}
            for chunk, pixels in decoder.batches(rows):
                for v, x in encoders.encode(encoders.normalize(pixels), [r["caption"] for r in chunk]).items():
                    outs[v].append(x.astype(dtype))
                advance(len(chunk))  # within-shard progress
            files = [art.shard_path(task.index).name]
            for v, dim in encoders.dims().items():
                mat = np.concatenate(outs[v]) if outs[v] else np.zeros((0, dim), dtype)
                write_npy(art.path / vector_relpath(v, task.index), mat)
                files.append(vector_relpath(v, task.index))
            write_table(art.shard_path(task.index), pa.table({"id": pa.array([r["id"] for r in rows], pa.string())}))
            art.mark_done(task.index, len(rows), files)

        work.encoders = encoders  # type: ignore[attr-defined]  (benchmarks reuse the loaded models)
        return work

    def finalize(self, artifact: Artifact, tasks: list[ShardTask]) -> dict[str, Any]:
        dims = {}
        for v in self.config.views():
            first = next((vector_path(artifact.path, v, t.index) for t in tasks), None)
            dims[v] = int(np.load(first, mmap_mode="r").shape[1]) if first and first.exists() else 0
        return {
            "views": {v: {"spec": s, "dim": dims[v], "modality": VIEW_MODALITY[v]} for v, s in self.config.views().items()},
            "dtype": self.config.dtype,
            "normalized": True,
        }
