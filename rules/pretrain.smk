# Pre-training: one job per experiment (method x variant x recipe), torchrun when it has more than one GPU.


rule pretrain:
    input:
        unpack(pretrain_inputs),
    output:
        checkpoint=protected("results/pretrain/{experiment}/checkpoint.pt"),
        metrics="results/pretrain/{experiment}/metrics.jsonl",
        config="results/pretrain/{experiment}/config.yaml",
    log:
        "logs/pretrain/{experiment}.log",
    benchmark:
        "results/benchmarks/pretrain/{experiment}.tsv"
    conda:
        "../envs/models.yaml"
    threads: 1
    resources:
        gpu=experiment_resource("gpus"),
        mem_mb=experiment_resource("mem_mb"),
        runtime=experiment_resource("runtime"),
        # Execution settings (the recipe's): resources, not params, so changing one reruns nothing and a resumed
        # training continues; `--set-resources pretrain:loader_workers=16` overrides one for a run.
        loader_workers=experiment_resource("num_workers"),
        save_every_epochs=experiment_resource("save_every_epochs"),
        save_every_steps=experiment_resource("save_every_steps"),
        max_nonfinite_in_row=experiment_resource("max_nonfinite_in_row"),
    params:
        experiment=experiment_json,
        out_dir=lambda wildcards, output: Path(output.checkpoint).parent,
        quality=quality_vector_option,
    # exec: the trainer replaces the shell, so a SIGTERM before a time limit (profiles/slurm) reaches the trainer,
    # which saves a resume point, and does not end the shell first (and with it Snakemake's wait for the job).
    shell:
        "exec python -m genview --gpus {resources.gpu} pretrain run --experiment {params.experiment:q}"
        " --out-dir {params.out_dir:q} --manifest {input.manifest:q} --views {input.views:q} {params.quality}"
        " --nproc {resources.gpu} --num-workers {resources.loader_workers}"
        " --save-every-epochs {resources.save_every_epochs} --save-every-steps {resources.save_every_steps}"
        " --max-nonfinite-in-row {resources.max_nonfinite_in_row} > {log:q} 2>&1"
