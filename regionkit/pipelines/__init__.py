"""Ray execution of builders and recipes: sharding, validation, Parquet, quarantine, cards."""
