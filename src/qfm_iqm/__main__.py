"""``python -m qfm_iqm``: the ``qfm-iqm`` command (``qfm_iqm.deploy.cli``), for an environment without its script."""

import sys

from qfm_iqm.deploy.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m qfm_iqm"))
