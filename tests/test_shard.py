import hashlib

import pandas as pd
import pytest

from genview.cli import main
from genview.data.shard import shard_rows, write_shards
from genview.errors import BadInputError


def manifest(n_train=103, n_test=7):
    rows = [
        dict(
            id=hashlib.sha1(str(i).encode()).hexdigest()[:16],
            path=f"img/{i}.png",
            caption="",
            label=str(i % 5),
            split="train" if i < n_train else "test",
            mask="",
        )
        for i in range(n_train + n_test)
    ]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("num_shards", [1, 2, 7, 103, 150])
def test_shards_are_complete_disjoint_and_balanced(num_shards):
    frame = manifest()
    shards = shard_rows(frame, num_shards)
    assert len(shards) == num_shards
    ids = [i for shard in shards for i in shard.id]
    assert sorted(ids) == sorted(frame.id[frame.split == "train"])  # complete, train only
    assert len(ids) == len(set(ids))  # disjoint
    sizes = [len(shard) for shard in shards]
    assert max(sizes) - min(sizes) <= 1


def test_shards_do_not_depend_on_row_order():
    frame = manifest()
    shuffled = frame.sample(frac=1, random_state=3)
    for a, b in zip(shard_rows(frame, 4), shard_rows(shuffled, 4)):
        assert list(a.id) == list(b.id)


def test_rerun_writes_identical_files(tmp_path):
    manifest().to_csv(tmp_path / "manifest.csv", index=False)
    first = [p.read_bytes() for p in write_shards(tmp_path / "manifest.csv", 3, tmp_path / "a")]
    second = [p.read_bytes() for p in write_shards(tmp_path / "manifest.csv", 3, tmp_path / "a")]
    assert first == second and [p.name for p in sorted((tmp_path / "a").iterdir())] == ["0.csv", "1.csv", "2.csv"]


def test_bad_inputs(tmp_path):
    with pytest.raises(BadInputError, match="at least 1"):
        shard_rows(manifest(), 0)
    pd.DataFrame({"x": [1]}).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(BadInputError, match="not a manifest"):
        write_shards(tmp_path / "m.csv", 2, tmp_path / "o")


def test_cli_shards_other_split(tmp_path):
    manifest().to_csv(tmp_path / "manifest.csv", index=False)
    code = main(
        [
            "data",
            "shard",
            "--manifest",
            str(tmp_path / "manifest.csv"),
            "--num-shards",
            "2",
            "--out-dir",
            str(tmp_path / "s"),
            "--split",
            "test",
        ]
    )
    assert code == 0
    sizes = [len(pd.read_csv(tmp_path / "s" / f"{i}.csv")) for i in range(2)]
    assert sorted(sizes) == [3, 4]
