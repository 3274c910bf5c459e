# GenView++ reproducibility workflow.
#   embedded default:   snakemake --cores all
#   full reproduction:  snakemake --cores all --resources gpu=8 --configfile config/paper.yaml
# Every output goes under results/ (logs under logs/): stages in docs/workflow.md, files in docs/outputs.md.
import copy
import os

from snakemake.utils import min_version

from genview.config.load import replaces_default

min_version("9.0")


# The embedded default, found beside this file whatever the working directory (--directory).
configfile: os.path.join(workflow.basedir, "config", "config.yaml")


# --configfile files merge into the embedded default, as Snakemake documents. A file that declares itself complete
# (`standalone: true`, as config/paper.yaml does) or derives from another (`derive`, config/rehearsal.yaml) replaces
# it instead: the config becomes the command line's files (and --config values) alone. Decided from the config
# itself, so a cluster job, which Snakemake starts with --configfiles but without --replace-workflow-config, resolves
# the same config as the main process.
if replaces_default(config):
    _command_line_config = copy.deepcopy(workflow.config_settings.overwrite_config)
    config.clear()
    config.update(_command_line_config)


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
