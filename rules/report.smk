# Reporting: the tables of config report.tables (results/tables/<name>.{md,tex,csv,html}, rule table_<name>), the
# t-SNE triptych, view galleries, quality audit (results/figures/) and the cost table. Each is its own target rule;
# `snakemake --report results/report.html` collects them. Settings are checked in common.smk.
for _table in TABLES:

    rule:
        name:
            f"table_{_table}"
        input:
            results=table_inputs(_table),
            spec=TABLES_FILE,
        output:
            md=f"results/tables/{_table}.md",
            tex=f"results/tables/{_table}.tex",
            csv=f"results/tables/{_table}.csv",
            html=report(f"results/tables/{_table}.html", category="Tables", labels={"table": _table}),
        log:
            f"logs/report/table_{_table}.log",
        localrule: True
        conda:
            "../envs/models.yaml"
        params:
            name=_table,
        shell:
            "python -m genview report table {params.name} --tables {input.spec:q} --results results/eval"
            " --out-dir results/tables > {log:q} 2>&1"


if CLAIM_TABLES:

    rule claims:
        input:
            results=[path for name in CLAIM_TABLES for path in table_inputs(name)],
            spec=TABLES_FILE,
        output:
            md="results/tables/claims.md",
            html=report("results/tables/claims.html", category="Claims"),
        log:
            "logs/report/claims.log",
        localrule: True
        conda:
            "../envs/models.yaml"
        shell:
            "python -m genview report claims --tables {input.spec:q} --results results/eval"
            " --out-prefix results/tables/claims > {log:q} 2>&1"


if REPORT["tsne"]:

    rule figure_tsne:
        input:
            tsne_inputs(),
        output:
            png=report("results/figures/tsne.png", category="Figures", labels={"figure": "t-SNE"}),
            points="results/figures/tsne.csv",
        log:
            "logs/report/tsne.log",
        benchmark:
            "results/benchmarks/figure_tsne/tsne.tsv"
        conda:
            "../envs/models.yaml"
        params:
            options=tsne_options(),
        shell:
            "python -m genview report tsne {params.options} --out {output.png:q} --points {output.points:q} > {log:q} 2>&1"


if REPORT["gallery"]:

    rule figure_gallery:
        input:
            **gallery_inputs(),
            models=model_inputs("fg_encoder", "unclip", "text2img"),
        output:
            **{
                source: report(path, category="Figures", labels={"figure": f"{source.upper()} gallery"})
                for source, path in gallery_outputs().items()
            },
        log:
            "logs/report/gallery.log",
        benchmark:
            "results/benchmarks/figure_gallery/gallery.tsv"
        conda:
            "../envs/models.yaml"
        threads: 2
        resources:
            gpu=RULE_GPUS["figure_gallery"],
        params:
            fg_encoder=as_json(config["models"]["fg_encoder"]),
            unclip=as_json(config["models"]["unclip"]),
            text2img=as_json(config["models"]["text2img"]),
            generation=as_json(dataset_generation(config, REPORT["gallery"]["dataset"])),
            options=gallery_options(),
            files=gallery_file_options,
            parts=analysis_part_options,
        shell:
            "python -m genview --gpus {resources.gpu} report gallery --shard {input.shard:q} {params.parts}"
            " --fg-encoder {params.fg_encoder:q} --unclip {params.unclip:q} --text2img {params.text2img:q}"
            " --generation {params.generation:q} {params.options} {params.files} > {log:q} 2>&1"


if REPORT["quality_audit"]:

    rule figure_quality:
        input:
            **quality_audit_inputs(),
            models=model_inputs("quality_encoder"),
        output:
            png=report("results/figures/quality_audit.png", category="Figures", labels={"figure": "quality audit"}),
            scores="results/figures/quality_audit.csv",
        log:
            "logs/report/quality_audit.log",
        benchmark:
            "results/benchmarks/figure_quality/quality_audit.tsv"
        conda:
            "../envs/models.yaml"
        threads: 2
        resources:
            gpu=RULE_GPUS["figure_quality"],
        params:
            encoder=as_json(config["models"]["quality_encoder"]),
            options=quality_audit_options(),
        shell:
            "python -m genview --gpus {resources.gpu} report quality --manifest {input.manifest:q}"
            " --views {input.views:q} --vector {input.vector:q} --encoder {params.encoder:q} {params.options}"
            " --out {output.png:q} --scores {output.scores:q} > {log:q} 2>&1"


if REPORT["checks"]:

    # Its own job (it needs only the dataset's index): it trains beside the views and the pre-training, off the
    # checks' critical path, and a rerun of the checks alone keeps it.
    rule train_pixel_judge:
        input:
            f"results/data/{REPORT['checks']['dataset']}/manifest.csv",
        output:
            "results/checks/pixel_judge.pt",
        log:
            "logs/report/train_pixel_judge.log",
        benchmark:
            "results/benchmarks/train_pixel_judge/pixel_judge.tsv"
        priority: RULE_PRIORITIES["train_pixel_judge"]
        conda:
            "../envs/models.yaml"
        threads: 1
        params:
            epochs=REPORT["checks"]["judge_epochs"],
            seed=config["seed"],
        shell:
            "python -m genview report train-pixel-judge --manifest {input:q} --epochs {params.epochs}"
            " --seed {params.seed} --out {output:q} > {log:q} 2>&1"

    rule ground_truth_checks:
        input:
            unpack(checks_inputs),
        output:
            json="results/checks/ground_truth.json",
            md=report("results/checks/ground_truth.md", category="Checks"),
        log:
            "logs/report/ground_truth_checks.log",
        benchmark:
            "results/benchmarks/ground_truth_checks/checks.tsv"
        conda:
            "../envs/models.yaml"
        threads: 1
        params:
            fg_encoder=as_json(config["models"]["fg_encoder"]),
            quality_encoder=as_json(config["models"]["quality_encoder"]),
            options=checks_options(),
            parts=analysis_part_options,
            unsupervised=lambda wildcards, input: (
                f"--unsupervised-encoder {shlex.quote(str(Path(input.unsupervised_encoder).parent))}"
                if "unsupervised_encoder" in input.keys()
                else ""
            ),
        shell:
            "python -m genview report checks --manifest {input.manifest:q} --pixel-judge {input.pixel_judge:q}"
            " --fit {input.fit:q}"
            " --fg-encoder {params.fg_encoder:q} --quality-encoder {params.quality_encoder:q}"
            " --vector {input.vector:q} --views {input.views:q} {params.parts} {params.options}"
            " --training-metrics {input.metrics:q} {params.unsupervised}"
            " --out-json {output.json:q} --out-md {output.md:q} > {log:q} 2>&1"


if REPORT["cost"]:

    rule table_cost:
        input:
            all_outputs(),
            report_outputs(cost=False),
        output:
            md="results/tables/cost.md",
            csv=report("results/tables/cost.csv", category="Tables", labels={"table": "cost"}),
        log:
            "logs/report/cost.log",
        localrule: True
        conda:
            "../envs/models.yaml"
        params:
            gpus=lambda wildcards: as_json(declared_gpus()),
            stages=lambda wildcards: " ".join(rule.name for rule in workflow.rules),
        shell:
            "python -m genview report cost --benchmarks results/benchmarks --rule-gpus {params.gpus:q}"
            " --stages {params.stages} --out-prefix results/tables/cost > {log:q} 2>&1"


# A `table_*` or `figure_*` target that names no rule reaches this one, which says which targets exist (instead of
# Snakemake's "No rule to produce"). Real table and figure targets are rule names and never come here.
rule unknown_report_target:
    input:
        unknown_report_target,
    output:
        "{target}",
    log:
        "logs/report/{target}.log",
    wildcard_constraints:
        target=r"(table|figure)_[^/]+",
    localrule: True
    conda:
        "../envs/models.yaml"
    shell:
        "true"
