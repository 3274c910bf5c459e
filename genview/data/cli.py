"""``genview data make-shapes | index | shard``."""

from __future__ import annotations

from genview.cli_args import json_argument
from genview.errors import ConfigError

#: What indexing reads of a dataset entry; num_shards, sources, generation and zeroshot_key change other stages only.
INDEX_KEYS = ("kind", "root", "splits", "captions", "classes", "file", "image_column", "caption_column",
              "label_column", "split_column", "mask_column", "name", "download", "holdout", "holdout_seed",
              "on_bad_image")  # fmt: skip
#: What make-shapes reads of a `shapes` entry.
SHAPES_KEYS = ("kind", "seed", "image_size", "train_per_class", "test_per_class", "sizes", "textures",
               "background_texture_probability", "outline_probability", "rotation")  # fmt: skip
#: What names a dataset's classes (label order, class names, zero-shot prompts).
CLASS_NAME_KEYS = ("kind", "name", "zeroshot_key")


def dataset_spec(args) -> dict:
    """The validated spec (defaults filled) of ``--dataset``, from ``--spec JSON`` or from ``--config FILE``."""
    from genview.config.load import load_config, validate_config

    if args.spec is not None:
        spec = json_argument(args.spec, "--spec")
        return validate_config({"datasets": {args.dataset: spec}}, source="--spec")["datasets"][args.dataset]
    config = load_config(args.config)
    for section in ("datasets", "eval_datasets"):
        if args.dataset in config[section]:
            return config[section][args.dataset]
    known = sorted(config["datasets"]) + sorted(config["eval_datasets"])
    raise ConfigError(f"{args.config}: no dataset {args.dataset!r} in datasets or eval_datasets (known: {known})")


def _add_dataset_arguments(parser) -> None:
    parser.add_argument("--dataset", required=True, help="dataset name (a key of datasets/eval_datasets)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--spec", help="the dataset's config entry as JSON (what the workflow passes)")
    source.add_argument("--config", default="config/config.yaml", help="config file to read the entry from")


def _make_shapes(args) -> None:
    from genview.data import dataset_root
    from genview.data.shapes import ShapesStyle, make_shapes

    spec = dataset_spec(args)
    if spec["kind"] != "shapes":
        raise ConfigError(f"dataset {args.dataset!r} has kind {spec['kind']!r}, not 'shapes'")
    make_shapes(
        args.root or dataset_root(args.dataset, spec),
        seed=spec["seed"],
        image_size=spec["image_size"],
        train_per_class=spec["train_per_class"],
        test_per_class=spec["test_per_class"],
        style=ShapesStyle.from_spec(spec),
    )


def _make_synthetic(args) -> None:
    from genview.data.synthetic import make_synthetic

    make_synthetic(args.dataset, dataset_spec(args))


def _index(args) -> None:
    from genview.data.index import index_dataset

    index_dataset(args.dataset, dataset_spec(args), args.out_dir, workers=args.workers)


def _shard(args) -> None:
    from genview.data.shard import write_shards

    write_shards(args.manifest, args.num_shards, args.out_dir, split=args.split)


def register(stages) -> None:
    stage = stages.add_parser("data", help="datasets: make-shapes, make-synthetic, index, shard")
    commands = stage.add_subparsers(dest="command", required=True)

    shapes = commands.add_parser("make-shapes", help="generate a `shapes` dataset from its config entry")
    _add_dataset_arguments(shapes)
    shapes.add_argument("--root", help="output folder (default: results/datasets/<dataset>)")
    shapes.set_defaults(run=_make_shapes)

    synthetic = commands.add_parser(
        "make-synthetic", help="write a dataset with `synthetic` set at its root, in its kind's format"
    )
    _add_dataset_arguments(synthetic)
    synthetic.set_defaults(run=_make_synthetic)

    index = commands.add_parser("index", help="verify every image and write manifest.csv + rejects.csv")
    _add_dataset_arguments(index)
    index.add_argument("--out-dir", required=True, help="folder for manifest.csv and rejects.csv")
    index.add_argument("--workers", type=int, default=1, help="processes decoding images")
    index.set_defaults(run=_index)

    shard = commands.add_parser("shard", help="split a manifest into balanced shard files 0.csv ... N-1.csv")
    shard.add_argument("--manifest", required=True)
    shard.add_argument("--num-shards", type=int, required=True)
    shard.add_argument("--out-dir", required=True)
    shard.add_argument("--split", default="train", help="which split to shard (default: train)")
    shard.set_defaults(run=_shard)
