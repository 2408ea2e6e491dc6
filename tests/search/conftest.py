"""Fixtures of the search tests: a toy retriever, a small gallery and an index built from it."""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

import pytest

from tests.search.searchtoy import ToyClipRetriever, make_images


@pytest.fixture(scope="session")
def toy() -> ToyClipRetriever:
    return ToyClipRetriever(seed=0)


@pytest.fixture(scope="session")
def other_toy() -> ToyClipRetriever:
    return ToyClipRetriever(seed=1)


@pytest.fixture(scope="session")
def gallery_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("gallery")
    make_images(folder, n=12)
    return folder


@pytest.fixture(scope="session")
def built_index(tmp_path_factory, gallery_dir, toy) -> Path:
    from megapairs.search import GalleryIndex

    out = tmp_path_factory.mktemp("index") / "idx"
    GalleryIndex.build(gallery_dir, toy, out, batch_size=4, shard_size=5, progress=False)
    return out


@pytest.fixture
def toy_registered(monkeypatch, toy, other_toy):
    """`load_retriever("toyclip:0")` returns the session toy (seed 1: `other_toy`)."""
    from megapairs.models import base

    try:
        importlib.import_module("megapairs.models.zoo")
    except ImportError:  # the built-in retrievers are not there yet: an empty zoo will do
        monkeypatch.setitem(sys.modules, "megapairs.models.zoo", types.ModuleType("megapairs.models.zoo"))
    monkeypatch.setitem(base.RETRIEVERS._factories, "toyclip",
                        lambda rest, **kw: {"0": toy, "1": other_toy}[rest])
    return toy
