"""Config tooling. ``load``: reading, deriving, merging and validating a config file against config/schema.yaml
(import-light: the Snakefile uses it). ``resolve``: the whole config checked against every stage, for the Snakefile
and ``genview config check``. ``estimate``: GPU-hours before anything runs. ``docs``: the generated reference pages.
``cli``: ``genview config check | estimate | docs``."""
