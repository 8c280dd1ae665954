# QFM-IQM reproduction pipeline: dataset -> features -> pairs -> teacher -> student -> evaluation -> figures.
# Run the demo:  snakemake --cores all
# Run LIVEC:     snakemake --cores all --configfile config/livec.yaml
# Tiers:         snakemake figures --profile workflow/profiles/figures    (redraw, never trains)
#                snakemake evaluate --profile workflow/profiles/evaluate  (from existing weights)


from snakemake.utils import min_version

min_version("9.0")  # pyproject.toml's workflow extra: snakemake>=9.0,<10


configfile: os.path.join(workflow.basedir, "config/config.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/pairs.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/deploy.smk"


state_acquisition_plan()
state_finetune_plan()


onstart:
    check_job_devices()
    check_hub_backbones()


rule all:
    input:
        all_targets(),
    default_target: True


rule figures:
    input:
        figure_targets(),


rule evaluate:
    input:
        evaluation_targets(),
        figure_targets(),
