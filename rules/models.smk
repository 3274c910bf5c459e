# Models the workflow makes itself: tiny random-weight stand-ins for every role (the smoke config), the tiny
# trained encoder of models.trained_encoder (the embedded default), and every role at its real architecture
# with random weights (the dress rehearsal). Real checkpoints are not built.


rule build_tiny_models:
    output:
        [f"{TINY_MODELS_DIR}/{marker}" for marker in TINY_MARKERS.values()],
    log:
        "logs/models/build_tiny.log",
    priority: RULE_PRIORITIES["build_tiny_models"]
    conda:
        "../envs/models.yaml"
    params:
        out_dir=lambda wildcards, output: Path(output[0]).parent.parent,
    shell:
        "python -m genview models build-tiny --out-dir {params.out_dir:q} > {log:q} 2>&1"


# Two encoders from the same settings: the foreground and quality encoder (token heads on the masks and labels of
# its dataset) and, for the checks, the same model trained without them (results/checks: what the supervision carries).
rule train_encoder:
    input:
        lambda wildcards: f"results/data/{config['models']['trained_encoder']['dataset']}/manifest.csv",
    output:
        f"{TRAINED_MODELS_DIR}/{{encoder}}/open_clip_config.json",
    log:
        "logs/models/train_{encoder}.log",
    benchmark:
        "results/benchmarks/train_encoder/{encoder}.tsv"
    wildcard_constraints:
        encoder="|".join(TRAINED_ENCODERS),
    priority: RULE_PRIORITIES["train_encoder"]
    conda:
        "../envs/models.yaml"
    threads: 1
    params:
        settings=lambda wildcards: as_json(config["models"]["trained_encoder"] | TRAINED_ENCODERS[wildcards.encoder]),
        out_dir=lambda wildcards, output: Path(output[0]).parent,
    shell:
        "python -m genview models train-encoder --manifest {input:q} --settings {params.settings:q}"
        " --out-dir {params.out_dir:q} > {log:q} 2>&1"


# One job per size (full: the published configurations, built on a GPU when there is one; small: for the CPU).
# The diffusion pipelines are saved as the weights variant the config loads (e.g. the paper's unCLIP fp16).
rule build_rehearsal_models:
    output:
        [f"{REHEARSAL_MODELS_DIR}/{{size}}/{marker}" for marker in TINY_MARKERS.values()],
    log:
        "logs/models/build_rehearsal_{size}.log",
    benchmark:
        "results/benchmarks/build_rehearsal_models/{size}.tsv"
    wildcard_constraints:
        size="|".join(REHEARSAL_SIZES),
    conda:
        "../envs/models.yaml"
    resources:
        gpu=lambda wildcards: RULE_GPUS["build_rehearsal_models"][wildcards.size],
    params:
        out_dir=lambda wildcards, output: Path(output[0]).parent.parent,
        variants=" ".join(
            f"--variant {role}={config['models'][role]['variant']}"
            for role in ("unclip", "text2img")
            if config["models"][role].get("variant")
        ),
    shell:
        "python -m genview --gpus {resources.gpu} rehearsal build --size {wildcards.size}"
        " --out-dir {params.out_dir:q} {params.variants} > {log:q} 2>&1"
