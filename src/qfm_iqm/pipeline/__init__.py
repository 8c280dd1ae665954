"""The pipeline: the workflow rules' stages and their runner, the config, provenance and data versioning."""
