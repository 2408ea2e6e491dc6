"""`index` and `search` subcommands, standalone and through `megapairs` (the registry resolves --model)."""

from __future__ import annotations

import json

import pytest

from megapairs.search.cli import main


def test_index_then_search(tmp_path, gallery_dir, toy_registered, capsys):
    out = tmp_path / "idx"
    assert main(["index", "--gallery", str(gallery_dir), "--model", "toyclip:0", "--out", str(out),
                 "--batch-size", "5"]) == 0
    assert "indexed 12 of 12 images" in capsys.readouterr().out
    query = sorted(gallery_dir.iterdir())[2]
    # --model defaults to the spec recorded in the index
    assert main(["search", "--index", str(out), "--image", str(query), "--text", "make it red", "-k", "4",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["query"] == {"image": str(query), "text": "make it red", "k": 4}
    assert [h["rank"] for h in result["hits"]] == [1, 2, 3, 4]
    scores = [h["score"] for h in result["hits"]]
    assert scores == sorted(scores, reverse=True) and set(result["hits"][0]) == {"path", "id", "score", "rank"}

    assert str(query) not in [h["path"] for h in result["hits"]]

    assert main(["search", "--index", str(out), "--image", str(query), "-k", "2"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["rank", "score", "id", "path"] and len(table) == 3
    assert str(query) not in [row.split()[3] for row in table[1:]]


def test_cli_and_api_agree_on_the_query_image(built_index, gallery_dir, toy_registered, toy, capsys):
    """Both leave the query picture out of its own hits and return the same list."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from megapairs.search.server import create_app

    query = sorted(gallery_dir.iterdir())[5]
    assert main(["search", "--index", str(built_index), "--image", str(query), "--text", "make it red",
                 "-k", "4", "--json"]) == 0
    cli = [h["id"] for h in json.loads(capsys.readouterr().out)["hits"]]
    api = TestClient(create_app(built_index, toy)).post(
        "/api/search", files={"image": (query.name, query.read_bytes(), "image/png")},
        data={"text": "make it red", "k": "4"}).json()["hits"]
    assert cli == [h["id"] for h in api] and len(cli) == 4


def test_search_errors(tmp_path, built_index, toy_registered, capsys):
    assert main(["search", "--index", str(built_index), "-k", "3"]) == 2
    assert "--image, --text, or both" in capsys.readouterr().err
    assert main(["search", "--index", str(built_index), "--model", "toyclip:1", "--text", "red"]) == 2
    err = capsys.readouterr().err
    assert "preprocess_id" in err and "--model toyclip:0" in err
    assert main(["search", "--index", str(tmp_path / "nowhere"), "--text", "red"]) == 2
    assert "not a finished search index" in capsys.readouterr().err
    assert main(["search", "--index", str(built_index), "--image", str(tmp_path / "missing.jpg")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_wired_into_megapairs_cli(built_index, toy_registered, capsys):
    megapairs_cli = pytest.importorskip("megapairs.cli")
    assert megapairs_cli.main(["search", "--index", str(built_index), "--text", "a red circle", "-k", "3",
                               "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["hits"]) == 3


def test_serve_builds_the_app(built_index, toy_registered, monkeypatch):
    uvicorn = pytest.importorskip("uvicorn")
    from fastapi.testclient import TestClient

    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.update(app=app, **kw))
    assert main(["serve", "--index", str(built_index), "--port", "8123", "--max-upload-mb", "0.5"]) == 0
    assert served["host"] == "127.0.0.1" and served["port"] == 8123
    info = TestClient(served["app"]).get("/api/info").json()
    assert info["max_upload_bytes"] == 512 * 1024 and info["retriever"] == "toyclip:0"
