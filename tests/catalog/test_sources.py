"""Every source the design names is in the catalog with what a dataset card needs."""

from __future__ import annotations

import pytest

from regionkit.catalog.sources import SOURCES, get_source

DESIGN_SOURCES = {
    "coco",
    "refcoco",
    "refcoco+",
    "refcocog",
    "refclef",
    "grefcoco",
    "vg",
    "vcr",
    "flickr30k",
    "muse",
}


def test_every_design_source_is_registered():
    assert set(SOURCES) >= DESIGN_SOURCES


@pytest.mark.parametrize("name", sorted(DESIGN_SOURCES))
def test_entries_are_complete(name):
    source = get_source(name)
    assert source.files and source.splits
    for text in (
        source.title,
        source.format,
        source.images,
        source.license_note,
        source.homepage,
        source.obtain,
    ):
        assert text.strip()
    assert source.citation.lstrip().startswith("@") and source.citation.count(
        "{"
    ) == source.citation.count("}")
    assert source.license in {"cc-by-4.0", "other"}


def test_unknown_source_lists_the_known_ones():
    with pytest.raises(KeyError, match="refcocog"):
        get_source("refcoco-g")
