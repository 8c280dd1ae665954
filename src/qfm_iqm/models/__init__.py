"""Model bundles that ship with qfm-iqm, one folder per name (``qfm_iqm.deploy.bundle``)."""
