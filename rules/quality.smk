# The quality encoder's PC-1 vector, fitted once per dataset (genview quality fit-vector); GenView's pair-quality
# weights project tokens on it. Stored beside the dataset's other analysis fits.


rule fit_quality_vector:
    input:
        manifest="results/data/{dataset}/manifest.csv",
        models=model_inputs("quality_encoder"),
    output:
        "results/analysis/{dataset}/quality_pca.npz",
    log:
        "logs/quality/{dataset}/fit_vector.log",
    benchmark:
        "results/benchmarks/fit_quality_vector/{dataset}.tsv"
    priority: RULE_PRIORITIES["fit_quality_vector"]
    conda:
        "../envs/models.yaml"
    threads: 2
    resources:
        gpu=RULE_GPUS["fit_quality_vector"],
    params:
        encoder=as_json(config["models"]["quality_encoder"]),
        analysis=subset(config["analysis"], FIT_QUALITY_KEYS),
        seed=config["seed"],
    shell:
        "python -m genview --gpus {resources.gpu} quality fit-vector --manifest {input.manifest:q}"
        " --encoder {params.encoder:q} --analysis {params.analysis:q} --seed {params.seed} --out {output:q}"
        " > {log:q} 2>&1"
