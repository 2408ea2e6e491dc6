"""`megapairs train` through `register(subparsers)`, as the main CLI wires it."""

import argparse

from megapairs.train.cli import register


def _main(argv):
    from megapairs.cli import main  # errors go through its one-line handler

    parser = argparse.ArgumentParser(prog="megapairs")
    register(parser.add_subparsers(dest="command", required=True))
    parser.parse_args(argv)  # register() alone wires the command
    return main(argv)


def test_train_command(clip_dir, triplets, tmp_path, capsys):
    out = tmp_path / "run"
    rc = _main(["train", "--data", str(triplets), "--model", f"clip:{clip_dir}", "--out", str(out),
                "max_steps=2", "batch_size=4", "train.lr=1e-3", "num_workers=0", "device=cpu", "eval_size=4"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "trained 2 steps" in text and "composed/R@1" in text
    assert (out / "final" / "megapairs_retriever.json").exists()
    assert (out / "final" / "modeling_MMRet_CLIP.py").exists()


def test_bad_override_is_a_clear_error(triplets, tmp_path, capsys):
    rc = _main(["train", "--data", str(triplets), "--out", str(tmp_path / "x"), "temperature=-1"])
    assert rc == 2
    assert "temperature" in capsys.readouterr().err
