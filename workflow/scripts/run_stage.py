"""Snakemake script shared by every rule: hands the job's files and params to qfm_iqm."""

import sys
from pathlib import Path

# The checkout's package first: the code the run's provenance records, and the one a job under --sdm conda finds
# (workflow/envs/qfm-iqm.yaml holds only the dependencies).
sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))  # noqa: F821

from qfm_iqm.pipeline.runner import run_stage

run_stage(snakemake.rule, snakemake.input, snakemake.output, snakemake.params,  # noqa: F821
          snakemake.log[0], snakemake.threads, snakemake.config)  # noqa: F821
