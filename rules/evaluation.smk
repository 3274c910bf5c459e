# Evaluation: one job per (experiment, dataset) caches the backbone features and runs every protocol that reads only
# them (linear_fast, knn, zeroshot, retrieval: results/eval/{experiment}/cached/{dataset}.json); the protocols that
# read images again (linear, semisup) run one job each (results/eval/{experiment}/{protocol}/{dataset}.json).


rule evaluate_cached:
    input:
        checkpoint="results/pretrain/{experiment}/checkpoint.pt",
        manifest="results/data/{dataset}/manifest.csv",
    output:
        features="results/eval/{experiment}/features/{dataset}.npz",
        results="results/eval/{experiment}/cached/{dataset}.json",
    log:
        "logs/evaluation/{experiment}/cached_{dataset}.log",
    benchmark:
        "results/benchmarks/evaluate_cached/{experiment}/{dataset}.tsv"
    conda:
        "../envs/models.yaml"
    threads: 1
    resources:
        gpu=RULE_GPUS["evaluate_cached"],
        loader_workers=config["evaluation"]["num_workers"],
    params:
        spec=class_names_spec_json,
        batch_size=config["evaluation"]["batch_size"],
        protocols=cached_protocols_json,
        seed=config["seed"],
    shell:
        "python -m genview --gpus {resources.gpu} evaluation cached --checkpoint {input.checkpoint:q}"
        " --manifest {input.manifest:q} --dataset {wildcards.dataset} --experiment {wildcards.experiment}"
        " --spec {params.spec:q} --protocols {params.protocols:q} --seed {params.seed}"
        " --batch-size {params.batch_size} --num-workers {resources.loader_workers}"
        " --features {output.features:q} --out {output.results:q} > {log:q} 2>&1"


rule evaluate:
    input:
        checkpoint="results/pretrain/{experiment}/checkpoint.pt",
        features="results/eval/{experiment}/features/{dataset}.npz",
    output:
        "results/eval/{experiment}/{protocol}/{dataset}.json",
    log:
        "logs/evaluation/{experiment}/{protocol}_{dataset}.log",
    benchmark:
        "results/benchmarks/evaluate/{protocol}/{experiment}/{dataset}.tsv"
    wildcard_constraints:
        protocol=_alternatives(IMAGE_PROTOCOLS),
    conda:
        "../envs/models.yaml"
    threads: 1
    resources:
        gpu=protocol_gpus,
        loader_workers=config["evaluation"]["num_workers"],
    params:
        spec=class_names_spec_json,
        settings=protocol_settings_json,
        seed=config["seed"],
    shell:
        "python -m genview --gpus {resources.gpu} evaluation run --protocol {wildcards.protocol}"
        " --experiment {wildcards.experiment} --checkpoint {input.checkpoint:q} --dataset {wildcards.dataset}"
        " --spec {params.spec:q} --features {input.features:q} --settings {params.settings:q} --seed {params.seed}"
        " --num-workers {resources.loader_workers} --out {output:q} > {log:q} 2>&1"
