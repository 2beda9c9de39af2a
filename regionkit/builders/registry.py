"""From a catalog source name to its builder class, imported only when asked for."""

from __future__ import annotations

import importlib
import importlib.util

from regionkit.builders.base import RegionBuilder
from regionkit.catalog.sources import SOURCES, get_source


def builder_class(source: str) -> type[RegionBuilder]:
    """The builder class registered for `source` in the catalog."""
    path = get_source(source).builder
    if path is None:
        raise KeyError(f"source {source!r} is described in the catalog but has no builder yet")
    module_name, class_name = path.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def available_sources() -> list[str]:
    """Catalog sources whose builder module is installed and importable."""
    names = []
    for name, source in SOURCES.items():
        if source.builder is None:
            continue
        module_name = source.builder.split(":")[0]
        if importlib.util.find_spec(module_name) is not None:
            names.append(name)
    return names
