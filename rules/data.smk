# Data stage: generate `shapes` and synthetic datasets, index every dataset into a manifest, shard the training sets.


rule make_shapes:
    output:
        "results/datasets/{dataset}/captions.csv",
    log:
        "logs/data/{dataset}/make_shapes.log",
    wildcard_constraints:
        dataset=_alternatives(SHAPES_DATASETS),
    priority: RULE_PRIORITIES["make_shapes"]
    conda:
        "../envs/data.yaml"
    params:
        spec=shapes_spec_json,
    shell:
        "python -m genview data make-shapes --dataset {wildcards.dataset} --spec {params.spec:q} > {log:q} 2>&1"


rule make_synthetic:
    output:
        f"{SYNTHETIC_ROOT.format(name='{dataset}')}/{SYNTHETIC_MARKER}",
    log:
        "logs/data/{dataset}/make_synthetic.log",
    wildcard_constraints:
        dataset=_alternatives(SYNTHETIC_ROOTS.values()),
    priority: RULE_PRIORITIES["make_synthetic"]
    conda:
        "../envs/data.yaml"
    params:
        spec=synthetic_spec_json,
    shell:
        "python -m genview data make-synthetic --dataset {wildcards.dataset} --spec {params.spec:q} > {log:q} 2>&1"


rule index_dataset:
    input:
        index_inputs,
    output:
        manifest="results/data/{dataset}/manifest.csv",
        rejects="results/data/{dataset}/rejects.csv",
    log:
        "logs/data/{dataset}/index.log",
    benchmark:
        "results/benchmarks/index_dataset/{dataset}.tsv"
    priority: RULE_PRIORITIES["index_dataset"]
    conda:
        "../envs/data.yaml"
    threads: 8
    params:
        spec=index_spec_json,
        out_dir=subpath(output.manifest, parent=True),
    shell:
        "python -m genview data index --dataset {wildcards.dataset} --spec {params.spec:q}"
        " --out-dir {params.out_dir:q} --workers {threads} > {log:q} 2>&1"


# The shard count is per dataset and outputs cannot be input functions, so each training dataset gets its
# own shard rule (shard_<dataset>), all running the same command.
for _dataset in TRAIN_DATASETS:

    rule:
        name:
            f"shard_{_dataset}"
        input:
            f"results/data/{_dataset}/manifest.csv",
        output:
            shard_files(_dataset),
        log:
            f"logs/data/{_dataset}/shard.log",
        conda:
            "../envs/data.yaml"
        params:
            num_shards=config["datasets"][_dataset]["num_shards"],
            out_dir=lambda wildcards, output: Path(output[0]).parent,
        shell:
            "python -m genview data shard --manifest {input:q} --num-shards {params.num_shards}"
            " --out-dir {params.out_dir:q} > {log:q} 2>&1"
