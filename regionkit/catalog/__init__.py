"""The shared vocabulary: the record schema, its validator, mask utilities, the source registry.

Every other part imports from here; this package imports from none of them.
"""
