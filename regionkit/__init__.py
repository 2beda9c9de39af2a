"""regionkit: unified region-level vision-language datasets, from source files to a model."""

__version__ = "0.1.0"
