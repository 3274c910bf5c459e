import json

import pandas as pd

from genview.cli import main


def test_make_shapes_index_and_shard_from_a_config_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text(
        "datasets:\n  toy: {kind: shapes, train_per_class: 3, test_per_class: 1, num_shards: 2}\n"
    )
    assert main(["data", "make-shapes", "--dataset", "toy", "--config", "c.yaml"]) == 0
    assert (tmp_path / "results/datasets/toy/captions.csv").is_file()
    assert main(["data", "index", "--dataset", "toy", "--config", "c.yaml", "--out-dir", "out"]) == 0
    assert len(pd.read_csv("out/manifest.csv")) == 48
    assert main(["config", "check", "c.yaml"]) == 0
    assert "valid" in capsys.readouterr().out


def test_errors_are_one_clear_line_without_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    spec = json.dumps({"kind": "imagefolder", "root": str(tmp_path / "nowhere")})
    assert main(["data", "index", "--dataset", "x", "--spec", spec, "--out-dir", "o"]) == 2
    error = capsys.readouterr().err
    assert "genview data: error: x: split folder" in error and "Traceback" not in error
    assert main(["data", "index", "--dataset", "x", "--spec", "{not json", "--out-dir", "o"]) == 2
    assert "--spec must be JSON" in capsys.readouterr().err
    bad = json.dumps({"kind": "imagefolder", "root": "/r", "num_shards": 0})
    assert main(["data", "index", "--dataset", "x", "--spec", bad, "--out-dir", "o"]) == 2
    assert "datasets.x.num_shards: 0 is less than the minimum of 1" in capsys.readouterr().err
    assert (
        main(
            ["data", "make-shapes", "--dataset", "x", "--spec", json.dumps({"kind": "csv", "root": "/r", "file": "f"})]
        )
        == 2
    )
    assert "not 'shapes'" in capsys.readouterr().err
