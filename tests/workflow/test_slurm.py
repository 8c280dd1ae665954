"""The workflow through SLURM: the tiny demo on a one-node test cluster, and the GPU profile in a dry run.

The cluster (tests/slurm_cluster.py) has no accounting database, so the executor asks ``squeue`` for job
states (``--slurm-status-command squeue``); ``sacct`` would answer "Slurm accounting storage is disabled".
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO
from slurm_cluster import missing_commands, running, single_node_slurm
from workflow_helpers import scheduled_jobs, snakemake, tiny_config, write_config

DS = "tiny"
PROFILE = REPO / "workflow/profiles/slurm"
GPU_PROFILE = REPO / "workflow/profiles/slurm-gpu"
# The tiny workflow up to split 0's pool labels goes through SLURM: data, weights, features (4 threads, 8 GB),
# splits, the teacher (1 thread) and its labels; the jobs after it are Python jobs of the same kind, run
# locally by the other tests.
COMPARED = ["splits.csv", "split0/pool_labels.csv"]
TARGETS = [f"results/{DS}/{name}" for name in COMPARED]

_missing = missing_commands()
needs_slurm = pytest.mark.skipif(
    bool(_missing) or os.geteuid() != 0,
    reason=(f"SLURM test cluster needs {', '.join(_missing)} (Debian packages slurm-wlm and munge)" if _missing
            else "the SLURM test cluster runs its daemons and jobs as root"),
)


def _rule_resources(proc: subprocess.CompletedProcess) -> dict[str, str]:
    """Rule -> its 'resources:' line in the job listing of a (dry) run."""
    return dict(re.findall(r"rule (\w+):\n(?:    .*\n)*?    resources: (.*)", proc.stdout + proc.stderr))


def _memory_caps(resources: dict[str, str], available_mb: int) -> dict[str, int]:
    """Rule -> mem_mb for the rules that ask for more memory than the test node has (sbatch would refuse them)."""
    asked = {rule: int(m[1]) for rule, res in resources.items() if (m := re.search(r"\bmem_mb=(\d+)", res))}
    return {rule: available_mb for rule, mem in asked.items() if mem > available_mb}


def _test_cluster_args(cpus: int, caps: dict[str, int]) -> list[str]:
    """Settings for the test cluster on top of the profile: squeue for states, quick polls, logs kept."""
    set_resources = ["--set-resources", *(f"{rule}:mem_mb={mem}" for rule, mem in caps.items())] if caps else []
    return ["--profile", str(PROFILE), *set_resources,
            "--slurm-status-command", "squeue",  # no accounting here: sacct cannot report job states
            "--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "1",
            "--slurm-keep-successful-logs",  # kept as evidence; by default only failed jobs' logs stay
            "--latency-wait", "5",  # one machine, no network file system between submit and compute host
            "--max-threads", str(cpus)]  # threads: 4 rules would not fit the node's CPUs (sbatch refuses)


def _slurm_jobs(env: dict) -> pd.DataFrame:
    """Every job the test cluster still remembers (MinJobAge): id, comment (rule_<name>...), state, CPUs, memory."""
    out = subprocess.run(["squeue", "--states=all", "--noheader", "--format=%i|%k|%T|%C|%m"], capture_output=True,
                         text=True, check=True, env={**os.environ, **env}, timeout=60).stdout
    rows = [line.split("|") for line in out.splitlines() if line.strip()]
    jobs = pd.DataFrame(rows, columns=["jobid", "comment", "state", "cpus", "mem"])
    jobs["rule"] = jobs["comment"].str.extract(r"^rule_(\w+?)(?:_wildcards_.*)?$", expand=False)
    return jobs


def _slurm_log_counts(workdir: Path) -> dict[str, int]:
    """Rule -> number of the executor's per-job logs, .snakemake/slurm_logs/rule_<name>/[<wildcards>/]<jobid>.log."""
    root = workdir / ".snakemake/slurm_logs"
    counts: dict[str, int] = {}
    for log in root.rglob("*.log"):
        assert log.stem.isdigit() and log.stat().st_size > 0, log
        rule = log.relative_to(root).parts[0].removeprefix("rule_")
        counts[rule] = counts.get(rule, 0) + 1
    return counts


def _slurmstepds() -> set[int]:
    return {int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and running(int(p.name))
            and (p / "comm").exists() and (p / "comm").read_text().strip() == "slurmstepd"}


@pytest.mark.slow
@needs_slurm
def test_tiny_workflow_through_slurm_matches_local_run(tiny_run: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The tiny run up to split 0's pool labels, job by job through sbatch on a one-node cluster, gives the local
    run's numbers."""
    workdir = tmp_path / "run"
    config = write_config(workdir, tiny_config())
    dry = snakemake(workdir, config, *TARGETS, "-n")
    expected = scheduled_jobs(dry)
    steps_before = _slurmstepds()

    with single_node_slurm(tmp_path) as env, monkeypatch.context() as patch:
        for key, value in env.items():  # SLURM_CONF, PATH: what sbatch, squeue and srun (in the jobs) need
            patch.setenv(key, value)
        caps = _memory_caps(_rule_resources(dry), env.real_memory_mb)  # none on a machine with >= 9 GB
        start = time.monotonic()
        proc = snakemake(workdir, config, *TARGETS, *_test_cluster_args(env.cpus, caps))
        wall = time.monotonic() - start
        jobs = _slurm_jobs(env)
        pids = dict(env.pids)
    print(f"\nSLURM run of the tiny workflow: {wall:.1f} s wall ({sum(expected.values())} SLURM jobs on "
          f"{env.cpus} CPUs / {env.real_memory_mb} MB)")

    # Every job was submitted with sbatch and ran as a SLURM job on the node: the executor's log per job, the
    # cluster's record of it (COMPLETED, with the CPUs and memory that the rule asked for).
    text = proc.stdout + proc.stderr
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", text)
    assert len(submitted) == sum(expected.values()), text[-3000:]
    assert _slurm_log_counts(workdir) == expected
    assert set(jobs["jobid"]) >= set(submitted)
    ours = jobs[jobs["jobid"].isin(submitted)]
    assert (ours["state"] == "COMPLETED").all(), ours
    assert ours["rule"].value_counts().to_dict() == dict(expected)
    features = ours[ours["rule"] == "extract_features"]
    features_mem = caps.get("extract_features", 8000)
    assert (features["cpus"] == str(min(4, env.cpus))).all() and (features["mem"] == f"{features_mem}M").all(), features
    assert (ours[ours["rule"] == "train_teacher"]["cpus"] == "1").all()

    # Same numbers as the local run of the same config (deterministic on CPU, same thread counts).
    for name in COMPARED:
        local = pd.read_csv(tiny_run / "results" / DS / name)
        remote = pd.read_csv(workdir / "results" / DS / name)
        pd.testing.assert_frame_equal(remote, local, check_exact=False, rtol=1e-9, atol=1e-12)

    # The daemons are gone, and so is every job step they started.
    assert not any(running(pid) for pid in pids.values()), pids
    assert not (_slurmstepds() - steps_before)


@pytest.mark.slow  # Snakemake builds the whole DAG
@pytest.mark.parametrize("profile", [PROFILE, GPU_PROFILE], ids=["slurm", "slurm-gpu"])
def test_slurm_profiles_dry_run(profile: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Snakemake accepts each SLURM profile and plans the whole tiny workflow (a dry run submits nothing and
    needs no cluster); the GPU profile puts the backbone rules on one GPU in the GPU partition."""
    monkeypatch.delenv("SLURM_CONF", raising=False)
    tiny = tiny_config()
    config = write_config(tmp_path, {**tiny, "finetune": {**tiny["finetune"], "enabled": True}})
    local = scheduled_jobs(snakemake(tmp_path, config, "-n"))
    proc = snakemake(tmp_path, config, "-n", "--profile", str(profile))
    assert scheduled_jobs(proc) == local
    resources = _rule_resources(proc)
    gpu_rules = {rule for rule, res in resources.items() if "gpu=1" in res}
    if profile == GPU_PROFILE:
        assert gpu_rules == {"extract_features", "finetune_student"}
        assert "slurm_partition=gpu" in resources["extract_features"]
        assert "slurm_partition" not in resources["train_student"]
    else:
        assert not gpu_rules
    assert "mem_mb=8000" in resources["extract_features"] and "runtime=" in resources["make_splits"]
