"""Datasets: acquisition, official layouts, the uniform meta table; the kinds are in ``registry``."""
