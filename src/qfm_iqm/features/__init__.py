"""Features: backbone weights and models, crops and multi-scale descriptors, the input pipeline, the feature cache."""
