"""Snakemake script shared by every rule: hands the job's files and params to qfm_iqm."""

from qfm_iqm.pipeline.runner import run_stage

run_stage(snakemake.rule, snakemake.input, snakemake.output, snakemake.params,  # noqa: F821
          snakemake.log[0], snakemake.threads, snakemake.config)  # noqa: F821
