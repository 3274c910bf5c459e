"""The workflow's shared names, as plain data: the view sources and the generator role of each, the evaluation
protocols and what each needs, the GPUs each rule's jobs hold and the order the scheduler prefers. The rules, the
config resolver, the stages and the cost table read them here (import-light: the Snakefile imports this module)."""

from __future__ import annotations

from dataclasses import dataclass

#: View source -> the generator role that makes it, in the order view slots draw them (slot v > 0 of a vision-language
#: sample draws from the (v - 1)-th source the experiment uses): image-conditioned (IC) and image-and-text-conditioned
#: (ITC) views come from the unCLIP model, text-conditioned (TC) views from the text-to-image model.
SOURCE_ROLES = {"ic": "unclip", "tc": "text2img", "itc": "unclip"}
SOURCES = tuple(SOURCE_ROLES)


@dataclass(frozen=True)
class Protocol:
    #: Runs on the features cached per (experiment, dataset), in the job that extracts them (rule evaluate_cached;
    #: its results share one file), instead of in a job of its own on the images (rule evaluate).
    cached: bool
    #: Needs a text tower: vision-language methods only.
    text: bool = False
    #: GPUs of a job of rule evaluate (a cached protocol runs in evaluate_cached, whose count RULE_GPUS states).
    gpus: int = 0


#: Evaluation protocol -> what it needs. A protocol's settings are the config's ``evaluation.<protocol>`` section.
PROTOCOLS = {
    "knn": Protocol(cached=True),
    "linear": Protocol(cached=False, gpus=1),
    "linear_fast": Protocol(cached=True),
    "retrieval": Protocol(cached=True, text=True),
    "semisup": Protocol(cached=False, gpus=1),
    "zeroshot": Protocol(cached=True, text=True),
}
CACHED_PROTOCOLS = tuple(name for name, protocol in PROTOCOLS.items() if protocol.cached)
TEXT_PROTOCOLS = tuple(name for name, protocol in PROTOCOLS.items() if protocol.text)

#: GPUs per job of each rule that uses one. A count, or a mapping from what the count depends on: the size of the
#: rehearsal models (the full size is built on the GPU it will run on), the caption-complexity scorer (only the chat
#: model needs a GPU), the protocol of an evaluation job. A pre-training job holds its experiment's ``gpus``.
RULE_GPUS = {
    "fit_foreground": 1,
    "foreground_shard": 1,
    "generate_views": 1,
    "fit_quality_vector": 1,
    "evaluate_cached": 1,
    "figure_gallery": 1,
    "figure_quality": 1,
    "build_rehearsal_models": {"full": 1, "small": 0},
    "complexity_shard": {"llm": 1, "lexical": 0},
    "evaluate": {name: protocol.gpus for name, protocol in PROTOCOLS.items() if not protocol.cached},
}

#: Scheduling priority of each rule's jobs (Snakemake's ``priority:``; a rule not listed has 0): when cores or GPUs
#: are short, the scheduler starts the ready job of higher priority first (it does not hold resources back for one).
#: The data jobs come first, as every stage reads the indexes and an index job takes every core of a small machine.
#: Then the chain to the generated views, which the GenView trainings wait for while the baselines do not, and the
#: checks' pixel judge, the longest job with only an index before it. Order only: no output depends on it.
RULE_PRIORITIES = {
    "make_shapes": 2,
    "make_synthetic": 2,
    "index_dataset": 2,
    "build_tiny_models": 1,
    "train_encoder": 1,
    "fit_foreground": 1,
    "foreground_shard": 1,
    "complexity_shard": 1,
    "generate_views": 1,
    "collect_views": 1,
    "fit_quality_vector": 1,
    "train_pixel_judge": 1,
}
