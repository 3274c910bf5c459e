# Reporting: the tables of config report.tables (results/tables/<name>.{md,tex,csv,html}, rule table_<name>), the
# t-SNE triptych, view galleries, quality audit (results/figures/) and the cost table. Each is its own target rule;
# `snakemake --report results/report.html` collects them.
import shlex
from types import SimpleNamespace

from genview.report.specs import check_sources, load_table_specs
from genview.report.tables import cell_sources

REPORT = config["report"]


def _table_specs():
    if not REPORT["tables"]:
        return {}
    try:
        specs = load_table_specs(Path(workflow.basedir) / REPORT["tables"])
        check_sources(specs, EVALUATIONS, REPORT["tables"])
    except ConfigError as error:
        raise WorkflowError(str(error)) from None
    return specs


def _report_error(key, message):
    raise WorkflowError(f"report.{key}: {message}")


TABLES = _table_specs()


def report_outputs():
    outputs = [f"results/tables/{name}.html" for name in TABLES]
    if REPORT["tsne"]:
        outputs.append("results/figures/tsne.png")
    if REPORT["gallery"]:
        outputs += gallery_outputs().values()
    if REPORT["quality_audit"]:
        outputs.append("results/figures/quality_audit.png")
    if REPORT["cost"]:
        outputs.append("results/tables/cost.csv")
    return outputs


for _table in TABLES:

    rule:
        name:
            f"table_{_table}"
        input:
            results=[f"results/eval/{e}/{p}/{d}.json" for e, p, d in cell_sources(TABLES[_table])],
            spec=Path(workflow.basedir) / REPORT["tables"],
        output:
            md=f"results/tables/{_table}.md",
            tex=f"results/tables/{_table}.tex",
            csv=f"results/tables/{_table}.csv",
            html=report(f"results/tables/{_table}.html", category="Tables", labels={"table": _table}),
        log:
            f"logs/report/table_{_table}.log",
        localrule: True
        conda:
            "../envs/report.yaml"
        params:
            name=_table,
        shell:
            "python -m genview report table {params.name} --tables {input.spec} --results results/eval"
            " --out-dir results/tables > {log} 2>&1"


if REPORT["tsne"]:
    _tsne = REPORT["tsne"]
    if _tsne["dataset"] not in ALL_DATASETS:
        _report_error("tsne.dataset", f"{_tsne['dataset']!r} is not a dataset of this config")
    _unknown = sorted(set(_tsne["panels"].values()) - set(EXPERIMENTS))
    if _unknown:
        _report_error("tsne.panels", f"unknown experiment(s) {_unknown}")

    def tsne_features(experiment):
        return f"results/eval/{experiment}/features/{REPORT['tsne']['dataset']}.npz"

    rule figure_tsne:
        input:
            [tsne_features(e) for e in _tsne["panels"].values()],
        output:
            png=report("results/figures/tsne.png", category="Figures", labels={"figure": "t-SNE"}),
            points="results/figures/tsne.csv",
        log:
            "logs/report/tsne.log",
        benchmark:
            "results/benchmarks/figure_tsne/tsne.tsv"
        conda:
            "../envs/report.yaml"
        params:
            panels=" ".join(
                "--panel " + shlex.quote(f"{label}={tsne_features(e)}")
                for label, e in _tsne["panels"].items()
            ),
            title=f"t-SNE of {_tsne['dataset']} features, {_tsne['classes']} seeded-random classes",
            settings=f"--splits {' '.join(_tsne['splits'])} --classes {_tsne['classes']} --per-class {_tsne['per_class']}"
            f" --perplexity {_tsne['perplexity']} --seed {_tsne['seed']}",
        shell:
            "python -m genview report tsne {params.panels} {params.settings} --title {params.title:q}"
            " --out {output.png} --points {output.points} 2> {log}"


def gallery_outputs():
    dataset = REPORT["gallery"]["dataset"]
    outputs = {}
    if needs_foreground(dataset):
        outputs["ic"] = "results/figures/gallery_ic.png"
    if needs_complexity(dataset):
        outputs["tc"] = "results/figures/gallery_tc.png"
    return outputs


if REPORT["gallery"]:
    _gallery = REPORT["gallery"]
    if _gallery["dataset"] not in TRAIN_DATASETS:
        _report_error("gallery.dataset", f"{_gallery['dataset']!r} is not a training dataset of this config")
    if _gallery["shard"] >= config["datasets"][_gallery["dataset"]]["num_shards"]:
        _report_error(
            "gallery.shard",
            f"{_gallery['dataset']} has {config['datasets'][_gallery['dataset']]['num_shards']} shard(s)",
        )
    if not gallery_outputs():
        _report_error(
            "gallery", f"{_gallery['dataset']} has no adaptive noise level or guidance scale to show"
        )

    rule figure_gallery:
        input:
            shard=f"results/data/{_gallery['dataset']}/shards/{_gallery['shard']}.csv",
            params=f"results/analysis/{_gallery['dataset']}/params/{_gallery['shard']}.csv",
            fit=f"results/analysis/{_gallery['dataset']}/fg_pca.npz",
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
            "../envs/generate.yaml"
        threads: 2
        resources:
            gpu=RULE_GPUS["figure_gallery"],
        params:
            fg_encoder=as_json(config["models"]["fg_encoder"]),
            unclip=as_json(config["models"]["unclip"]),
            text2img=as_json(config["models"]["text2img"]),
            generation=as_json(dataset_generation(config, _gallery["dataset"])),
            out_tc=lambda wildcards, output: f"--out-tc {output.tc}" if "tc" in output.keys() else "",
            settings=f"--images {_gallery['images']} --noise-levels {' '.join(map(str, _gallery['noise_levels']))}"
            f" --guidance-scales {' '.join(map(str, _gallery['guidance_scales']))} --seed {config['seed']}",
        shell:
            "python -m genview --gpus {resources.gpu} report gallery --shard {input.shard} --params {input.params} --fit {input.fit}"
            " --fg-encoder {params.fg_encoder:q} --unclip {params.unclip:q} --text2img {params.text2img:q}"
            " --generation {params.generation:q} {params.settings} --out-ic {output.ic} {params.out_tc} 2> {log}"


if REPORT["quality_audit"]:
    _audit = REPORT["quality_audit"]
    if _audit["dataset"] not in TRAIN_DATASETS:
        _report_error(
            "quality_audit.dataset", f"{_audit['dataset']!r} is not a training dataset of this config"
        )

    rule figure_quality:
        input:
            manifest=f"results/data/{_audit['dataset']}/manifest.csv",
            views=view_manifests(_audit["dataset"]),
            vector=f"results/analysis/{_audit['dataset']}/quality_pca.npz",
            models=model_inputs("quality_encoder"),
        output:
            png=report(
                "results/figures/quality_audit.png", category="Figures", labels={"figure": "quality audit"}
            ),
            scores="results/figures/quality_audit.csv",
        log:
            "logs/report/quality_audit.log",
        benchmark:
            "results/benchmarks/figure_quality/quality_audit.tsv"
        conda:
            "../envs/train.yaml"
        threads: 2
        resources:
            gpu=RULE_GPUS["figure_quality"],
        params:
            encoder=as_json(config["models"]["quality_encoder"]),
            settings=f"--sample {_audit['sample']} --extremes {_audit['extremes']} --seed {config['seed']}",
        shell:
            "python -m genview --gpus {resources.gpu} report quality --manifest {input.manifest} --views {input.views}"
            " --vector {input.vector} --encoder {params.encoder:q} {params.settings}"
            " --out {output.png} --scores {output.scores} 2> {log}"


def declared_gpus():
    """GPUs each rule's jobs declare (the cost table's GPU-hours), from the same settings the rules use."""
    gpus = dict(RULE_GPUS)
    gpus["complexity_shard"] = complexity_gpus(None)
    gpus["pretrain"] = {name: experiment["gpus"] for name, experiment in EXPERIMENTS.items()}
    gpus["evaluate"] = {p: protocol_gpus(SimpleNamespace(protocol=p)) for p in protocol_names(config)}
    return gpus


if REPORT["cost"]:

    rule table_cost:
        input:
            all_outputs(),
        output:
            md="results/tables/cost.md",
            csv=report("results/tables/cost.csv", category="Tables", labels={"table": "cost"}),
        log:
            "logs/report/cost.log",
        localrule: True
        conda:
            "../envs/report.yaml"
        params:
            gpus=lambda wildcards: as_json(declared_gpus()),
            stages=" ".join(rule.name for rule in workflow.rules),
        shell:
            "python -m genview report cost --benchmarks results/benchmarks --rule-gpus {params.gpus:q}"
            " --stages {params.stages} --out-prefix results/tables/cost > {log} 2>&1"
