# Models: tiny random-weight stand-ins for every role, for the embedded default (real checkpoints are not built).


rule build_tiny_models:
    output:
        [f"{TINY_MODELS_DIR}/{marker}" for marker in TINY_MARKERS.values()],
    log:
        "logs/models/build_tiny.log",
    conda:
        "../envs/generate.yaml"
    params:
        out_dir=lambda wildcards, output: Path(output[0]).parent.parent,
    shell:
        "python -m genview models build-tiny --out-dir {params.out_dir} 2> {log}"
