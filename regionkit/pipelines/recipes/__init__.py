"""The recipe files: each assembles one training dataset's pipeline (see `catalog.recipes`)."""
