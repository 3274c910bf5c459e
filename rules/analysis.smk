# Analysis: PC-1 and threshold per dataset; per shard, foreground ratio -> noise level and caption complexity ->
# guidance scale, each part its own file (a view job reads the parts its source needs and joins them).


rule fit_foreground:
    input:
        manifest="results/data/{dataset}/manifest.csv",
        models=model_inputs("fg_encoder"),
    output:
        fit="results/analysis/{dataset}/fg_pca.npz",
        overlay="results/analysis/{dataset}/fg_overlay.png",
    log:
        "logs/analysis/{dataset}/fit_foreground.log",
    benchmark:
        "results/benchmarks/fit_foreground/{dataset}.tsv"
    priority: RULE_PRIORITIES["fit_foreground"]
    conda:
        "../envs/models.yaml"
    threads: 2
    resources:
        gpu=RULE_GPUS["fit_foreground"],
    params:
        encoder=as_json(config["models"]["fg_encoder"]),
        analysis=subset(config["analysis"], FIT_FOREGROUND_KEYS),
        seed=config["seed"],
    shell:
        "python -m genview --gpus {resources.gpu} analysis fit-foreground --manifest {input.manifest:q}"
        " --encoder {params.encoder:q} --analysis {params.analysis:q} --seed {params.seed} --out {output.fit:q}"
        " --overlay {output.overlay:q} > {log:q} 2>&1"


rule foreground_shard:
    input:
        shard="results/data/{dataset}/shards/{shard}.csv",
        fit="results/analysis/{dataset}/fg_pca.npz",
        models=model_inputs("fg_encoder"),
    output:
        "results/analysis/{dataset}/foreground/{shard}.csv",
    log:
        "logs/analysis/{dataset}/foreground/{shard}.log",
    benchmark:
        "results/benchmarks/foreground_shard/{dataset}/{shard}.tsv"
    priority: RULE_PRIORITIES["foreground_shard"]
    conda:
        "../envs/models.yaml"
    threads: 2
    resources:
        gpu=RULE_GPUS["foreground_shard"],
    params:
        encoder=as_json(config["models"]["fg_encoder"]),
        analysis=subset(config["analysis"], FOREGROUND_KEYS),
    shell:
        "python -m genview --gpus {resources.gpu} analysis foreground --shard {input.shard:q} --fit {input.fit:q}"
        " --encoder {params.encoder:q} --analysis {params.analysis:q} --out {output:q} > {log:q} 2>&1"


rule complexity_shard:
    input:
        shard="results/data/{dataset}/shards/{shard}.csv",
        models=complexity_models,
    output:
        "results/analysis/{dataset}/complexity/{shard}.csv",
    log:
        "logs/analysis/{dataset}/complexity/{shard}.log",
    benchmark:
        "results/benchmarks/complexity_shard/{dataset}/{shard}.tsv"
    priority: RULE_PRIORITIES["complexity_shard"]
    conda:
        "../envs/models.yaml"
    resources:
        gpu=COMPLEXITY_GPUS,
    params:
        analysis=subset(config["analysis"], COMPLEXITY_SETTINGS),
        llm=complexity_llm_options,
    shell:
        "python -m genview --gpus {resources.gpu} analysis complexity --shard {input.shard:q}"
        " --analysis {params.analysis:q} {params.llm} --out {output:q} > {log:q} 2>&1"
