# Evaluation: backbone features cached once per (experiment, dataset), then one job per (experiment, protocol,
# dataset) that the config's evaluation.runs ask for, each writing results/eval/{experiment}/{protocol}/{dataset}.json.


rule extract_features:
    input:
        checkpoint="results/pretrain/{experiment}/checkpoint.pt",
        manifest="results/data/{dataset}/manifest.csv",
    output:
        "results/eval/{experiment}/features/{dataset}.npz",
    log:
        "logs/eval/{experiment}/features_{dataset}.log",
    benchmark:
        "results/benchmarks/extract_features/{experiment}/{dataset}.tsv"
    conda:
        "../envs/evaluate.yaml"
    threads: 1
    resources:
        gpu=RULE_GPUS["extract_features"],
        loader_workers=config["evaluation"]["num_workers"],
    params:
        spec=class_names_spec_json,
        batch_size=config["evaluation"]["batch_size"],
    shell:
        "python -m genview --gpus {resources.gpu} evaluate features --checkpoint {input.checkpoint}"
        " --manifest {input.manifest} --dataset {wildcards.dataset} --spec {params.spec:q} --out {output}"
        " --batch-size {params.batch_size} --num-workers {resources.loader_workers} 2> {log}"


rule evaluate:
    input:
        checkpoint="results/pretrain/{experiment}/checkpoint.pt",
        features="results/eval/{experiment}/features/{dataset}.npz",
    output:
        "results/eval/{experiment}/{protocol}/{dataset}.json",
    log:
        "logs/eval/{experiment}/{protocol}_{dataset}.log",
    benchmark:
        "results/benchmarks/evaluate/{experiment}/{protocol}/{dataset}.tsv"
    conda:
        "../envs/evaluate.yaml"
    threads: 1
    resources:
        gpu=protocol_gpus,
        loader_workers=config["evaluation"]["num_workers"],
    params:
        spec=class_names_spec_json,
        settings=protocol_settings_json,
        seed=config["seed"],
    shell:
        "python -m genview --gpus {resources.gpu} evaluate run --protocol {wildcards.protocol}"
        " --experiment {wildcards.experiment} --checkpoint {input.checkpoint} --dataset {wildcards.dataset}"
        " --spec {params.spec:q} --features {input.features} --settings {params.settings:q} --seed {params.seed}"
        " --num-workers {resources.loader_workers} --out {output} 2> {log}"
