"""Evaluation protocols: a registry from name to class, one module each (``@register("name")``).

A protocol reads an :class:`EvalContext` (the experiment, its checkpoint, the dataset's cached features and the
protocol's settings from the config) and returns its metrics; :func:`evaluate` writes them with provenance.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import subprocess
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from genview import __version__
from genview.io import atomic_path, file_sha256
from genview.registry import Registry

#: Protocol name -> class; a job imports only the module of the protocol it runs.
PROTOCOLS = Registry("evaluation protocol", package=__name__, name_attribute="name")
register = PROTOCOLS.register
log = logging.getLogger(__name__)


def protocol_class(name: str) -> type:
    return PROTOCOLS[name]


@dataclass
class EvalContext:
    experiment_name: str
    checkpoint: Path
    dataset: str
    spec: dict
    features_npz: Path
    settings: dict
    seed: int = 0
    device: str = "cpu"
    num_workers: int = 4
    #: Where a long protocol keeps its per-epoch resume point (beside the result file); None: no resume point.
    resume_path: Path | None = None
    extra: dict = field(default_factory=dict)

    def resume(self, protocol: str, **key):
        """The resume point of this evaluation, stamped with everything its result depends on (``key``: which part
        of the protocol, e.g. the labelled fraction)."""
        from genview.evaluation.resume import EpochResume
        from genview.io import file_fingerprint

        return EpochResume(
            self.resume_path,
            dict(
                protocol=protocol,
                settings=self.settings,
                seed=self.seed,
                checkpoint=file_fingerprint(self.checkpoint),
                features=file_fingerprint(self.features_npz),
                **key,
            ),
        )

    @cached_property
    def features(self):
        from genview.evaluation.features import FeatureCache
        from genview.io import file_fingerprint

        cache = FeatureCache(self.features_npz)
        made_from = cache.arrays.get("checkpoint_fingerprint")
        if made_from is not None and str(made_from) != file_fingerprint(self.checkpoint):
            from genview.errors import BadInputError

            raise BadInputError(
                f"{self.features_npz} holds features of another checkpoint than {self.checkpoint}; extract them again"
            )
        return cache

    @cached_property
    def loaded(self):
        from genview.evaluation.pretrained import load_checkpoint

        return load_checkpoint(self.checkpoint, self.device)

    @property
    def model(self):
        return self.loaded[0]

    @cached_property
    def experiment(self) -> dict:
        """The checkpoint's resolved experiment, read without building the model (most protocols never need it)."""
        from genview.evaluation.checkpoints import checkpoint_experiment

        return checkpoint_experiment(self.checkpoint)


class Protocol:
    name = "protocol"

    def run(self, context: EvalContext) -> dict:
        raise NotImplementedError


def _code_version() -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=10,
        ).stdout.strip()
    except OSError:
        commit = ""
    return f"{__version__}+{commit}" if commit else __version__


def evaluation_record(protocol: str, context: EvalContext) -> dict:
    """Run ``protocol``: its metrics, settings and provenance."""
    started = time.perf_counter()
    metrics = protocol_class(protocol)().run(context)
    experiment = context.experiment
    record = {
        "experiment": context.experiment_name,
        "protocol": protocol,
        "dataset": context.dataset,
        "metrics": metrics,
        "settings": context.settings,
        "provenance": {
            "config_hash": hashlib.sha256(json.dumps(experiment, sort_keys=True).encode()).hexdigest()[:16],
            "experiment_config": str(Path(context.checkpoint).parent / "config.yaml"),
            "checkpoint": str(context.checkpoint),
            "checkpoint_sha256": file_sha256(context.checkpoint),
            "code_version": _code_version(),
            "seed": context.seed,
            "device": context.device,
            "host": platform.node(),
            "wall_seconds": round(time.perf_counter() - started, 3),
        },
    }
    record = json.loads(json.dumps(record, default=_plain))
    scalars = {key: value for key, value in record["metrics"].items() if isinstance(value, (int, float))}
    log.info(
        "%s %s on %s: %s (%.1f s)",
        context.experiment_name,
        protocol,
        context.dataset,
        ", ".join(f"{key} {value:.4g}" for key, value in scalars.items()) or "no scalar metric",
        record["provenance"]["wall_seconds"],
    )
    return record


def write_json(payload: dict, out_json: str | Path) -> None:
    text = json.dumps(payload, indent=2, default=_plain) + "\n"
    with atomic_path(out_json) as tmp:
        tmp.write_text(text)


def evaluate(protocol: str, context: EvalContext, out_json: str | Path) -> dict:
    """Run ``protocol`` and write its result JSON: metrics, settings, provenance. Long protocols keep a resume point
    beside it (``<out_json>.resume.pt``) until they finish."""
    if context.resume_path is None:
        context.resume_path = Path(f"{out_json}.resume.pt")
    record = evaluation_record(protocol, context)
    write_json(record, out_json)
    return record


def _plain(value):
    """numpy scalars and arrays in metrics, as JSON numbers and lists."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
