"""The `evaluate` subcommand: registration without side effects, and a full run."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import megapairs.models.base as base
from megapairs.evaluate import cli


def test_register_is_light():
    code = ("import sys, argparse, megapairs.evaluate.cli as c; p = argparse.ArgumentParser(); "
            "c.register(p.add_subparsers()); print(sorted(m for m in ('torch', 'faiss', 'transformers', 'numpy') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cli_runs_circo(circo_dir: Path, retriever, tmp_path: Path, monkeypatch, capsys):
    seen = []
    monkeypatch.setattr(base, "load_retriever", lambda spec, **kw: seen.append(spec) or retriever)
    parser = argparse.ArgumentParser(prog="megapairs")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["evaluate", "--benchmark", "circo", "--data", str(circo_dir), "--model", "tiny:0",
                              "--split", "val", "--out", str(tmp_path / "out"), "--template", "magiclens",
                              "--reference-policy", "remove", "--cache-dir", str(tmp_path / "c"), "--no-progress"])
    assert args.func(args) == 0 and seen == ["tiny:0"]
    printed = json.loads(capsys.readouterr().out)
    assert printed["benchmark"] == "circo" and "mAP@5" in printed["metrics"]
    saved = json.loads((tmp_path / "out" / "circo_val.json").read_text())
    assert saved["template"]["name"] == "magiclens" and saved["reference_policy"] == "remove"
    assert saved["options"]["template"] == "magiclens"


def test_cli_reports_missing_files(tmp_path: Path, retriever, monkeypatch, capsys):
    monkeypatch.setattr(base, "load_retriever", lambda spec, **kw: retriever)
    rc = cli.main(["--benchmark", "cirr", "--data", str(tmp_path), "--model", "x:y", "--no-progress",
                   "--cache-dir", str(tmp_path / "c")])
    assert rc == 2
    assert str(tmp_path / "captions" / "cap.rc2.val.json") in capsys.readouterr().err
