"""GenView++ reproducibility workflow: the Python package behind the Snakemake rules."""

__version__ = "0.1.0"
