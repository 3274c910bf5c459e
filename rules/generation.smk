# Generation: one job per (dataset, source, shard). Views go to results/views/{dataset}/{source}/{shard}/ and are
# reused by a rerun; the shard's view manifest is written last and is the job's output.


rule generate_views:
    input:
        unpack(view_analysis_parts),
        shard="results/data/{dataset}/shards/{shard}.csv",
        models=generation_model_inputs,
    output:
        "results/views/{dataset}/{source}/{shard}.manifest.csv",
    log:
        "logs/generation/{dataset}/{source}/{shard}.log",
    benchmark:
        "results/benchmarks/generate_views/{dataset}/{source}/{shard}.tsv"
    priority: RULE_PRIORITIES["generate_views"]
    conda:
        "../envs/models.yaml"
    threads: 2
    resources:
        gpu=RULE_GPUS["generate_views"],
    params:
        views_dir=lambda wildcards, output: output[0].removesuffix(".manifest.csv"),
        generation=generation_json,
        model=generation_model_json,
        seed=config["seed"],
        on_bad_image=lambda wildcards: ALL_DATASETS[wildcards.dataset]["on_bad_image"],
        parts=analysis_part_options,
    shell:
        "python -m genview --gpus {resources.gpu} generation views --source {wildcards.source}"
        " --shard {input.shard:q} {params.parts} --views-dir {params.views_dir:q} --out {output:q}"
        " --generation {params.generation:q} --model {params.model:q} --seed {params.seed}"
        " --on-bad-image {params.on_bad_image} > {log:q} 2>&1"


# Training reads one view manifest per (dataset, source); one edge per source instead of one per shard also keeps the
# paper's DAG (CC3M: 512 shards x 3 sources) quick to build.
rule collect_views:
    input:
        shard_view_manifests,
    output:
        "results/views/{dataset}/{source}.manifest.csv",
    log:
        "logs/generation/{dataset}/{source}/collect.log",
    priority: RULE_PRIORITIES["collect_views"]
    localrule: True
    conda:
        "../envs/models.yaml"
    shell:
        "python -m genview generation collect --out {output:q} {input:q} > {log:q} 2>&1"
