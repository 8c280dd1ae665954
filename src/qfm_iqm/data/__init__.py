"""Datasets: acquisition, official layouts, the uniform meta table, splits; the kinds are in ``registry``."""
