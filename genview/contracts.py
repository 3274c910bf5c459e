"""The file contracts between stages: each table file the workflow writes, its path, its columns and their types, with
the one reader and writer every stage uses.

A reader checks the columns a stage needs and reads every column with its declared type (ids stay strings, empty
text stays ""), so no stage has its own dtype handling. A writer orders the columns as declared and writes atomically.
``docs/outputs.md`` is generated from these declarations and :data:`OUTPUTS` (``genview config docs``).

Import-light: pandas is imported by the readers and writers only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from genview.errors import BadInputError

# Column types: "str" (empty stays ""), "int", "float" (empty is NaN), "bool".
_DTYPES = {"str": str, "int": "Int64", "float": float, "bool": "boolean"}


@dataclass(frozen=True)
class Contract:
    name: str
    path: str  # under the working folder; {wildcards} as the rules name them
    description: str
    columns: dict[str, tuple[str, str]]  # column -> (type, meaning)
    #: Columns a reader may find absent (older files, or parts a config does not compute); read as empty.
    optional: tuple[str, ...] = field(default=())

    @property
    def column_names(self) -> list[str]:
        return list(self.columns)

    def read(self, path: str | os.PathLike, *, need: tuple[str, ...] | None = None):
        """The file as a DataFrame with the declared types. ``need``: the columns the caller uses (default: all the
        contract's required ones); a file without them is a BadInputError naming it."""
        import pandas as pd

        try:
            header = pd.read_csv(path, nrows=0).columns
        except FileNotFoundError:
            raise BadInputError(f"{self.name} not found: {path}") from None
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
            raise BadInputError(f"{path}: not a readable {self.name} CSV: {error}") from None
        required = need if need is not None else [c for c in self.columns if c not in self.optional]
        missing = [column for column in required if column not in header]
        if missing:
            raise BadInputError(f"{path}: not a {self.name} (missing column(s) {missing}; columns: {list(header)})")
        types = {c: self.columns[c][0] for c in header if c in self.columns}
        frame = pd.read_csv(
            path,
            dtype={c: _DTYPES[t] for c, t in types.items()},
            keep_default_na=False,
            na_values={c: [""] for c, t in types.items() if t != "str"},
        )
        for column in self.optional:
            if column not in frame.columns:
                kind = self.columns[column][0]
                frame[column] = "" if kind == "str" else pd.array([None] * len(frame), dtype=_DTYPES[kind])
        return frame

    def write(self, frame, path: str | os.PathLike, **to_csv) -> None:
        """Write ``frame`` with exactly the contract's columns, in order (absent optional ones empty), atomically."""
        from genview.io import atomic_path

        absent = [c for c in self.columns if c not in frame.columns and c not in self.optional]
        if absent:
            raise ValueError(f"{self.name}: columns {absent} missing from the frame to write to {path}")
        with atomic_path(path) as tmp:
            frame.reindex(columns=self.column_names).to_csv(tmp, index=False, **to_csv)


_SAMPLE_COLUMNS = {
    "id": (
        "str",
        "stable id of the sample: a hash of its path relative to the root (and caption), the same on every run",
    ),
    "path": ("str", "the image file"),
    "caption": ("str", "its caption (empty when the dataset has none)"),
    "label": ("str", "class label as the dataset names it (folder name, CSV value); empty when unlabelled"),
    "split": ("str", "train, test, ... (a holdout moves a share of train to test)"),
    "mask": ("str", "ground-truth foreground mask file, when the dataset has one"),
}

MANIFEST = Contract(
    "manifest",
    "results/data/{dataset}/manifest.csv",
    "Every usable sample of a dataset, each image verified to decode.",
    _SAMPLE_COLUMNS,
)
REJECTS = Contract(
    "rejects list",
    "results/data/{dataset}/rejects.csv",
    "Every file indexing could not use, with the reason (unreadable image, missing file, dangling link, ...).",
    {
        "path": ("str", "the file or folder"),
        "split": ("str", "its split, when known"),
        "reason": ("str", "why it is not in the manifest"),
    },
)
SHARD = Contract(
    "shard",
    "results/data/{dataset}/shards/{shard}.csv",
    "One shard of a training split (the manifest's rows, ordered by id): the unit of analysis and generation jobs.",
    _SAMPLE_COLUMNS,
)
FOREGROUND = Contract(
    "foreground ratios",
    "results/analysis/{dataset}/foreground/{shard}.csv",
    "Per image of a shard: the share of its patch tokens above the fitted threshold, and the noise level it gives.",
    {
        "id": ("str", "sample id"),
        "fg_ratio": ("float", "foreground ratio in [0, 1]"),
        "noise_level": ("int", "unCLIP noise level for IC/ITC views"),
        "mask_iou": ("float", "IoU of the token mask with the ground-truth mask (empty without one)"),
    },
)
COMPLEXITY = Contract(
    "caption complexity",
    "results/analysis/{dataset}/complexity/{shard}.csv",
    "Per caption of a shard: its visual-complexity score and the guidance scale it gives.",
    {
        "id": ("str", "sample id"),
        "complexity": ("int", "score 1-4"),
        "guidance_scale": ("float", "guidance for TC/ITC views"),
        "complexity_source": ("str", "llm, lexical-fallback (the LLM never gave a score) or lexical"),
        "llm_attempts": ("int", "LLM answers requested (0 when it was not asked)"),
    },
)
VIEWS = Contract(
    "view manifest",
    "results/views/{dataset}/{source}/{shard}.manifest.csv; collected: results/views/{dataset}/{source}.manifest.csv",
    "Every generated view of a shard (or, collected, of a dataset) for one source.",
    {
        "id": ("str", "sample id of the source image"),
        "view": ("str", "the view's JPEG"),
        "source": ("str", "ic, tc or itc"),
        "sample": ("int", "view index (generation.samples views per image)"),
        "noise_level": ("int", "unCLIP noise level used (empty for tc)"),
        "guidance_scale": ("float", "guidance used"),
        "seed": ("int", "the view's own seed"),
        "stamp": ("str", "hash of everything that set the view's pixels; also in its file name"),
        "bytes": ("int", "the view file's size, checked before training (a truncated or deleted view is named)"),
        "sha256": ("str", "the view file's SHA-256, checked by `genview generation verify`"),
        "view_label": ("str", "the class the view shows (generators that know it: the shapes renderer)"),
        "class_changed": ("bool", "whether that class differs from the source image's"),
        "kept_attributes": (
            "str",
            "the source's attributes (IC, ITC) or the caption's stated ones (TC) the view kept, ';'-joined",
        ),
    },
    optional=("bytes", "sha256", "view_label", "class_changed", "kept_attributes"),
)
QUALITY_SCORES = Contract(
    "quality audit scores",
    "results/figures/quality_audit.csv",
    "Quality scores of a sample of (real, generated) pairs per source, as GenView's weights score them.",
    {
        "id": ("str", "sample id"),
        "source": ("str", "view source"),
        "view": ("str", "generated view"),
        "real": ("str", "real image"),
        "quality": ("float", "cos of the foreground features - cos of the background ones"),
    },
)

CONTRACTS = (MANIFEST, REJECTS, SHARD, FOREGROUND, COMPLEXITY, VIEWS, QUALITY_SCORES)


def read_rows(path: str | os.PathLike, contract: Contract = MANIFEST, need: tuple[str, ...] | None = None):
    """Shortcut: ``contract.read(path, need=need)`` (manifests and shards by default)."""
    return contract.read(path, need=need)


def outputs_table() -> str:
    """The Markdown section of docs/outputs.md that lists the table files and their columns."""
    lines = []
    for contract in CONTRACTS:
        lines += [
            f"### {contract.name}: `{contract.path}`",
            "",
            contract.description,
            "",
            "| column | type | meaning |",
            "|---|---|---|",
        ]
        lines += [
            f"| `{c}` | {t}{' (optional)' if c in contract.optional else ''} | {m} |"
            for c, (t, m) in contract.columns.items()
        ]
        lines.append("")
    return "\n".join(lines)


@dataclass(frozen=True)
class Output:
    """Files the workflow writes: their path patterns ({wildcard}: one path part, ``*``: any file name, a trailing
    ``/``: everything in the folder), the rules that write them ({x} in a rule name: the rules made per table or
    dataset), what they hold, and who writes them where no rule's output does (``by``)."""

    paths: tuple[str, ...]
    rules: tuple[str, ...]
    what: str
    by: str = ""


#: Every path the workflow writes under results/ (and logs/), with what it holds; the table files' columns follow.
#: tests/test_contracts.py holds it to the rules: every rule is here, and every output of a finished run matches a
#: path of its rule.
OUTPUTS = (
    Output(
        ("results/datasets/{dataset}/",),
        ("make_shapes", "make_synthetic"),
        "a generated dataset: class folders per split, masks/, captions.csv with every image's attributes "
        "(`shapes`), or the synthetic set's synthetic.json",
    ),
    Output(
        ("results/data/{dataset}/manifest.csv", "results/data/{dataset}/rejects.csv"),
        ("index_dataset",),
        "the manifest and the rejects list",
    ),
    Output(("results/data/{dataset}/shards/{shard}.csv",), ("shard_{dataset}",), "the training split cut into shards"),
    Output(
        ("results/models/tiny/{role}/",),
        ("build_tiny_models",),
        "random-weight stand-ins for every model role (the smoke config), in each library's own format",
    ),
    Output(
        ("results/models/trained/{encoder}/",),
        ("train_encoder",),
        "the tiny open_clip encoder trained on a shapes dataset (models.trained_encoder: `encoder`), and the same "
        "trained without token supervision for the checks (`encoder_unsupervised`)",
    ),
    Output(
        ("results/models/rehearsal/{size}/{role}/",),
        ("build_rehearsal_models",),
        "the dress rehearsal's random-weight models at the published architectures (`full`) or smaller (`small`)",
    ),
    Output(
        ("results/analysis/{dataset}/fg_pca.npz", "results/analysis/{dataset}/fg_overlay.png"),
        ("fit_foreground",),
        "PC-1 vector, threshold, sign, threshold mode, fitting sample ids, encoder stamp (and mean IoU with "
        "ground-truth masks); an overlay of the token masks",
    ),
    Output(
        ("results/analysis/{dataset}/foreground/{shard}.csv",), ("foreground_shard",), "foreground ratios (table below)"
    ),
    Output(
        ("results/analysis/{dataset}/complexity/{shard}.csv",),
        ("complexity_shard",),
        "caption complexity (table below)",
    ),
    Output(
        ("results/analysis/{dataset}/quality_pca.npz",),
        ("fit_quality_vector",),
        "PC-1 vector of the quality encoder's tokens, sign, sample ids, encoder stamp",
    ),
    Output(
        ("results/views/{dataset}/{source}/{shard}/*.jpg",),
        ("generate_views",),
        "the views; file name `<id>_<sample>_<stamp>.jpg`",
    ),
    Output(
        ("results/views/{dataset}/{source}/{shard}.manifest.csv", "results/views/{dataset}/{source}.manifest.csv"),
        ("generate_views", "collect_views"),
        "view manifests (table below): one per shard, and the shards' collected",
    ),
    Output(
        ("results/pretrain/{experiment}/checkpoint.pt",),
        ("pretrain",),
        "the trained backbone and method weights with the resolved experiment (write-protected: Snakemake's "
        "protected())",
    ),
    Output(
        ("results/pretrain/{experiment}/metrics.jsonl", "results/pretrain/{experiment}/config.yaml"),
        ("pretrain",),
        "one record per step (loss, lr, loss terms, quality weights' range) and per epoch (mean loss, images/s); the "
        "resolved experiment",
    ),
    Output(
        (
            "results/pretrain/{experiment}/resume.pt",
            "results/pretrain/{experiment}/checkpoint.pt.digest.json",
            "results/pretrain/{experiment}/.writer.lock",
        ),
        (),
        "the resume point (kept across reruns); the checkpoint's size and SHA-256 (a truncated checkpoint stops the "
        "run before its evaluations are redone); the lock held by the training that writes the folder",
        by="pretrain, beside its outputs",
    ),
    Output(
        ("results/eval/{experiment}/features/{dataset}.npz",),
        ("evaluate_cached",),
        "backbone features, labels, ids, paths, captions per split; class names; the checkpoint's fingerprint",
    ),
    Output(
        ("results/eval/{experiment}/cached/{dataset}.json",),
        ("evaluate_cached",),
        "the protocols on cached features (linear_fast, knn, zeroshot, retrieval), one record per protocol: metrics, "
        "settings and provenance (config hash, checkpoint sha256, code version, seed, device, host, wall time)",
    ),
    Output(
        ("results/eval/{experiment}/{protocol}/{dataset}.json",),
        ("evaluate",),
        "the protocols that read images again (linear, semisup): one record as above; <name>.json.resume.pt is the "
        "resume point while it runs",
    ),
    Output(
        ("results/checks/pixel_judge.pt",),
        ("train_pixel_judge",),
        "the checks' pixel judge, a conv net trained with the real training split's labels (torch file: weights, "
        "classes, image size, training settings, and its accuracy on the real test split as PNG and as JPEG 75)",
    ),
    Output(
        ("results/checks/ground_truth.json", "results/checks/ground_truth.md"),
        ("ground_truth_checks",),
        "the embedded default's checks against the shapes ground truth (foreground IoU, class kept per noise level "
        "and guidance, the quality score's AUC, the share of the random -> supervised gap each baseline closes and "
        "the variants' paired differences); `goals` lists every goal as {goal, value, threshold, passed, detail}",
    ),
    Output(
        tuple(f"results/tables/{{table}}.{suffix}" for suffix in ("md", "tex", "csv", "html")),
        ("table_{table}",),
        "a paper table: reproduced value, paper value and difference per cell; missing cells name the file that "
        "would fill them",
    ),
    Output(
        ("results/tables/claims.md", "results/tables/claims.html"),
        ("claims",),
        "every claimed direction of the seeded tables (a column's `expect` against the table's `compare_to`): the "
        "paired difference, its 95 % interval, the verdict (reproduced / not reproduced / undecided), the sd of the "
        "per-seed differences and the seeds a ±2-point interval would take",
    ),
    Output(
        ("results/tables/cost.md", "results/tables/cost.csv"),
        ("table_cost",),
        "jobs, wall time, memory and GPU-hours per stage",
    ),
    Output(
        ("results/figures/tsne.png", "results/figures/tsne.csv"), ("figure_tsne",), "the t-SNE triptych and its points"
    ),
    Output(
        ("results/figures/gallery_ic.png", "results/figures/gallery_tc.png"),
        ("figure_gallery",),
        "views across noise levels and guidance scales, the adaptive choice framed",
    ),
    Output(
        ("results/figures/quality_audit.png", "results/figures/quality_audit.csv"),
        ("figure_quality",),
        "quality score histograms and the best and worst pairs (table below)",
    ),
    Output(("results/benchmarks/{rule}/",), (), "wall time and memory per job", by="every heavy rule (benchmark:)"),
    Output(("results/report.html",), (), "every table and figure in one file", by="snakemake --report"),
    Output(("logs/{stage}/",), (), "each job's log", by="every rule"),
)


def output_pattern(path: str):
    """A compiled regular expression for an :class:`Output` path pattern."""
    import re

    folder = path.endswith("/")
    parts = re.split(r"(\{\w+\}|\*)", path)
    body = "".join("[^/]+" if part.startswith("{") else "[^/]*" if part == "*" else re.escape(part) for part in parts)
    return re.compile(body + (".*" if folder else ""))


def outputs_doc() -> str:
    """docs/outputs.md: every output path, then the columns of each table file."""
    lines = [
        "# Outputs",
        "",
        "Generated from `genview/contracts.py` by `genview config docs`. Everything goes under `results/` (logs "
        "under `logs/`), both beside the Snakefile's working folder; delete a file or folder to have the "
        "workflow rebuild it and what depends on it.",
        "",
        "| path | written by | contents |",
        "|---|---|---|",
    ]
    lines += [
        f"| {'<br>'.join(f'`{path}`' for path in output.paths)} | {output.by or ', '.join(output.rules)} | "
        f"{output.what} |"
        for output in OUTPUTS
    ]
    lines += ["", "## Table files", "", outputs_table()]
    return "\n".join(lines).rstrip() + "\n"
