# Models the workflow makes itself: tiny random-weight stand-ins for every role (the smoke config), and the tiny
# trained encoder of models.trained_encoder (the embedded default). Real checkpoints are not built.


rule build_tiny_models:
    output:
        [f"{TINY_MODELS_DIR}/{marker}" for marker in TINY_MARKERS.values()],
    log:
        "logs/models/build_tiny.log",
    conda:
        "../envs/models.yaml"
    params:
        out_dir=lambda wildcards, output: Path(output[0]).parent.parent,
    shell:
        "python -m genview models build-tiny --out-dir {params.out_dir} > {log} 2>&1"


rule train_encoder:
    input:
        lambda wildcards: f"results/data/{config['models']['trained_encoder']['dataset']}/manifest.csv",
    output:
        f"{TRAINED_ENCODER_DIR}/open_clip_config.json",
    log:
        "logs/models/train_encoder.log",
    benchmark:
        "results/benchmarks/train_encoder/encoder.tsv"
    conda:
        "../envs/models.yaml"
    threads: 1
    params:
        settings=as_json(config["models"]["trained_encoder"]),
        out_dir=lambda wildcards, output: Path(output[0]).parent,
    shell:
        "python -m genview models train-encoder --manifest {input} --settings {params.settings:q}"
        " --out-dir {params.out_dir} > {log} 2>&1"
