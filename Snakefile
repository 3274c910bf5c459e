# GenView++ reproducibility workflow.
#   embedded default:   snakemake --cores all
#   full reproduction:  snakemake --cores all --resources gpu=8 --configfile config/paper.yaml
# Every output goes under results/ (logs under logs/): stages in docs/workflow.md, files in docs/outputs.md.
import copy
import os

from snakemake.utils import min_version

from genview.config.load import merge_config, read_yaml, replaces_default

min_version("9.0")


# `config` holds the command line's --configfile files and --config values. They merge onto the embedded default
# (config/config.yaml beside this file, whatever the working directory), as Snakemake merges config files, unless one
# declares itself complete (`standalone: true`, as config/paper.yaml does) or derives from another (`derive`,
# config/rehearsal.yaml): then they are the config alone. Decided from the config itself, so a cluster job, which
# Snakemake starts with the same --configfiles, resolves the same config as the main process. (A `configfile:`
# directive would merge the default in before this line could see what the command line gave.)
if not replaces_default(config):
    _command_line_config = copy.deepcopy(config)
    _default = read_yaml(os.path.join(workflow.basedir, "config", "config.yaml"))
    config.clear()
    config.update(merge_config(_default, _command_line_config))


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/models.smk"
include: "rules/analysis.smk"
include: "rules/generation.smk"
include: "rules/quality.smk"
include: "rules/pretrain.smk"
include: "rules/evaluation.smk"
include: "rules/report.smk"


report: "report/workflow.rst"


rule all:
    default_target: True
    input:
        all_outputs(),
        report_outputs(),
