"""Deployment: model bundles (``bundle``), the scorer behind ``qfm_iqm.load_model`` (``scorer``) and the
``qfm-iqm`` command line (``cli``)."""
