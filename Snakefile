# GenView++ reproducibility workflow.
#   embedded default:   snakemake --cores all
#   full reproduction:  snakemake --cores all --resources gpu=8 --configfile config/paper.yaml
# Every output goes under results/ (logs under logs/); see README.md for the stages and their files.
from snakemake.utils import min_version

min_version("9.0")


# A --configfile replaces the embedded default instead of being deep-merged into it (snakemake's default), so
# config/paper.yaml does not inherit the default's `shapes` dataset. --config KEY=VALUE still edits the default.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/models.smk"
include: "rules/analyze.smk"
include: "rules/generate.smk"
include: "rules/pretrain.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"


report: "report/workflow.rst"


rule all:
    default_target: True
    input:
        all_outputs(),
        report_outputs(),
