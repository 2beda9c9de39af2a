"""The steps recipes are made of: split hygiene, region facts, generation, quality checks."""
