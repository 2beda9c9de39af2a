"""Builders that read a source folder as users unpack it: `--root`, `--images`, `--splits`.

Every source except COCO ships as one folder of files under their original names (the catalog
lists them), plus an image folder. This base class owns those three options, resolves the
catalog's expected files under `--root` with errors that name the file and the entry, and
filters splits, so each source's builder only adds what is its own (e.g. refer's `--split-by`).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from regionkit.builders.base import BuilderInputError, RegionBuilder


def _split_list(text: str) -> tuple[str, ...]:
    return tuple(s for s in (part.strip() for part in text.split(",")) if s)


class RootedBuilder(RegionBuilder):
    """A builder over `--root` (the unpacked source folder) and `--images` (the image root)."""

    def __init__(self, root: Path, images: Path, splits: Iterable[str] | None = None) -> None:
        self.root = Path(root).resolve()
        self.images = Path(images).resolve()
        self.splits = tuple(splits) if splits else None

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--root",
            type=Path,
            required=True,
            help="the source's folder as unpacked, holding the expected files listed above",
        )
        parser.add_argument(
            "--images", type=Path, required=True, help="the image root: see 'images' above"
        )
        parser.add_argument(
            "--splits",
            type=_split_list,
            default=None,
            help="comma-separated split names to build, matched exactly (default: every split "
            "the files hold)",
        )

    def arguments(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "images": str(self.images),
            "splits": list(self.splits) if self.splits else None,
        }

    def image_root(self) -> Path:
        return self.images

    def expected_file(self, pattern: str, **values: str) -> Path:
        """The catalog file `pattern` under `--root`, or an error naming it and what it holds."""
        described = {f.pattern: f.description for f in self.catalog.files}
        if pattern not in described:
            raise KeyError(f"{pattern!r} is not among source {self.source!r}'s expected files")
        path = self.root / pattern.format(**values)
        return self.require_file(path, f"{path.name} ({described[pattern]}) under --root")

    def wants_split(self, split: str) -> bool:
        """Whether `split` was asked for; names match exactly (`testA` is not `testAB`)."""
        return self.splits is None or split in self.splits

    def check_splits_found(self, found: Iterable[str]) -> None:
        """Fail clearly when a split given in `--splits` is not in the source's files."""
        found = set(found)
        missing = [s for s in self.splits or () if s not in found]
        if missing:
            raise BuilderInputError(
                f"{self.root}: split(s) {missing} asked for with --splits are not in the files; "
                f"the splits there are: {', '.join(sorted(found)) or 'none'}"
            )

    def split_file(self, split: str, *patterns: str) -> Path | None:
        """`split`'s file under --root, the first of `patterns` (spellings of one `{split}` file)
        that exists; None if none does, an error if two spellings are two different files."""
        found = [self.root / p.format(split=split) for p in patterns]
        found = [path for path in found if path.is_file()]
        for other in found[1:]:
            if not os.path.samefile(found[0], other):
                raise BuilderInputError(
                    f"{self.root}: both {found[0].name} and {other.name} exist; they are the "
                    f"same split {split!r} under two spellings, keep one"
                )
        return found[0] if found else None

    def present_split_files(self, *patterns: str) -> dict[str, Path]:
        """Split -> file for each catalog split whose file exists under --root, in catalog order."""
        found = {s: self.split_file(s, *patterns) for s in self.catalog.splits}
        return {s: path for s, path in found.items() if path is not None}

    def split_files(self, *patterns: str, none_found: str | None = None) -> dict[str, Path]:
        """Split -> file to read: each split named with --splits (its file must exist), else
        every catalog split whose file exists, and an error when none does.

        `patterns` are spellings of one catalog file (the first is the catalog's), e.g.
        `muse_{split}.json` and `MUSE_{split}.json`; `none_found` replaces the default
        `none of <files> found` in the error.
        """
        first = patterns[0]
        if self.splits:
            asked = {split: self.split_file(split, *patterns) for split in self.splits}
            missing = [split for split, path in asked.items() if path is None]
            if missing:
                present = ", ".join(self.present_split_files(*patterns)) or "none"
                files = "; ".join(
                    f"{split!r} ({' or '.join(p.format(split=split) for p in patterns)})"
                    for split in missing
                )
                raise BuilderInputError(
                    f"{self.root}: no file under --root for the split(s) asked for with "
                    f"--splits: {files}; the splits there are: {present}"
                )
            return asked
        found = self.present_split_files(*patterns)
        if not found:
            names = ", ".join(first.format(split=s) for s in self.catalog.splits)
            raise BuilderInputError(
                f"{self.root}: "
                + (
                    none_found
                    or f"none of {names} found. Catalog source {self.source!r} needs at least "
                    f"one under --root; see `regionkit sources {self.source}`."
                )
            )
        return found
