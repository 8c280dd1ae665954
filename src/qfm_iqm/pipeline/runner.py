"""Run a stage inside a Snakemake job: log to the rule's log file, clean errors for bad input."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from qfm_iqm.features.devices import check_device
from qfm_iqm.io import InputError, write_json
from qfm_iqm.pipeline import digests, provenance
from qfm_iqm.settings import ConfigError
from qfm_iqm.pipeline.stages import STAGES


def run_stage(name: str, input: Any, output: Any, params: Any, log_path: str, threads: int = 1,
              config: dict | None = None) -> None:
    """Call rule ``name``'s stage (registry ``STAGES``); stderr (progress bars) and logging go to ``log_path``.

    Snakemake's named inputs, outputs and params reach the stage as plain namespaces (an optional
    input is present or not: ``hasattr``). Every ``device`` in its params is checked first (``check_device``,
    where the job runs). Bad input (InputError, ConfigError) ends the job with a one-line message naming the
    culprit, on the console and in the log; any other error keeps its traceback in the log. Inputs are checked
    against their digests first, and outputs get theirs (``qfm_iqm.pipeline.digests``). A job with a
    ``provenance`` output gets its provenance record there (``qfm_iqm.pipeline.provenance``).
    """
    os.environ["OMP_NUM_THREADS"] = str(max(1, threads))  # read by torch when a stage imports it
    with open(log_path, "w") as log_file, contextlib.redirect_stderr(log_file):
        handler = logging.StreamHandler(log_file)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
        try:
            started, clock = datetime.now(UTC), time.perf_counter()
            run = STAGES[name]  # an unknown rule: UnknownName, listing the rules that have a stage
            for key, device in provenance.requested_devices(dict(params.items())).items():
                check_device(device, key)
            digests.verify(input)
            run(*(SimpleNamespace(**dict(files.items())) for files in (input, output, params)))
            digests.record(output)
            if "provenance" in dict(output.items()):
                outputs = [str(path) for key, path in output.items() if key != "provenance"]
                write_json(provenance.record(name, dict(params.items()), config or {}, outputs, started,
                                             time.perf_counter() - clock), output.provenance)
        except (InputError, ConfigError) as err:
            logging.getLogger(name).error("%s", err)
            print(f"ERROR in {name}: {err}", file=sys.__stderr__)
            raise SystemExit(1) from None
        except Exception:
            logging.getLogger(name).exception("stage %s failed", name)
            raise
