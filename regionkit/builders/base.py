"""The builder contract: index a source into work items, then turn one item into rows.

A builder runs in two places. On the driver, `index()` reads the source's index files once and
returns, per split, a deterministic list of `WorkItem`s (usually one per image) plus whatever it
already had to reject. On workers, `build_item()` turns one item into `Built` rows and `Rejected`
inputs. The base class owns the loop over a shard, the counting, and the check that nothing went
missing: every unit an item declares (images, annotations, refs, ...) must come back either in a
row or in quarantine, or the shard fails loudly as a builder bug.

Builders read files and produce records; they never tokenize, call an LLM or import pipelines.
"""

from __future__ import annotations

import argparse
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from regionkit.builders.tasks import IN_PROCESS, Tasks
from regionkit.catalog.records import make_row
from regionkit.catalog.sources import Source, get_source


class BuilderInputError(Exception):
    """A source cannot be read at all (missing or unparsable index file): nothing can be built."""


@dataclass(frozen=True)
class WorkItem:
    """One unit of work, usually one image and everything annotated on it.

    Attributes:
        split: the source's split name.
        key: native key, unique within the split (becomes the row id's last part).
        payload: whatever `build_item` needs; must pickle, so keep it to plain data.
        units: how many inputs of each kind the item consumes, e.g. {"image": 1, "annotation": 7}.
    """

    split: str
    key: str
    payload: Any
    units: Mapping[str, int]


@dataclass
class Built:
    """A row in storage form and the input units it accounts for.

    Attributes:
        row: the row in storage form.
        units: the input units the row accounts for.
        adjustments: what was changed on the way in and kept, by code: e.g. polygon parts
            dropped from an object that stays (`polygon_part_dropped: 2`). The build report and
            the manifest sum them, so a repair is counted like a rejection is.
    """

    row: dict[str, Any]
    units: Mapping[str, int]
    adjustments: Mapping[str, int] = field(default_factory=dict)


RECORD_VALUE_LIMIT = 1_000_000
"""Most values a quarantined record may hold: beyond it the record is described, not copied."""


def _writable(record: Any) -> Any:
    """`record`, unless writing it as JSON would never end or be absurdly large.

    Untrusted inputs can nest one container inside itself (pickle memo opcodes) or share one
    list many times over; counting values with repeats, up to a limit, catches both, where a
    JSON writer would fail the shard or write without end.
    """
    stack, values = [record], 0
    while stack:
        item = stack.pop()
        values += 1
        if values > RECORD_VALUE_LIMIT:
            return {
                "unwritable": f"the input holds over {RECORD_VALUE_LIMIT:,} values counting "
                "repeats, or a container inside itself; it is not copied here"
            }
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return record


@dataclass
class Rejected:
    """An input that goes to quarantine instead of a row.

    Attributes:
        key: what the input is, e.g. `annotation 403418` or `image 255917`.
        code: a short slug for counting, e.g. `missing_image`.
        reason: a sentence a person can act on (names the field when one is at fault).
        units: the input units this rejection accounts for, e.g. an image and its 7 annotations.
        record: the original input, JSON-serialisable, so nothing is lost.
        file: the source file the input came from.
        stage: `index` (driver), `build` (worker) or `validate` (the engine's row check).
    """

    key: str
    code: str
    reason: str
    units: Mapping[str, int]
    record: Any = None
    file: str | None = None
    stage: str = "build"

    def to_json(self, split: str | None) -> dict[str, Any]:
        """The quarantine line for this rejection."""
        return {
            "stage": self.stage,
            "split": split,
            "key": self.key,
            "code": self.code,
            "reason": self.reason,
            "units": dict(self.units),
            "file": self.file,
            "record": _writable(self.record),
        }


@dataclass
class SourceIndex:
    """What `index()` found: work items per split and the inputs rejected while indexing."""

    items: dict[str, list[WorkItem]] = field(default_factory=dict)
    rejected: list[tuple[str | None, Rejected]] = field(default_factory=list)

    def add(self, item: WorkItem) -> None:
        self.items.setdefault(item.split, []).append(item)

    def reject(self, split: str | None, rejected: Rejected) -> None:
        self.rejected.append((split, Rejected(**{**rejected.__dict__, "stage": "index"})))


class RegionBuilder(ABC):
    """Base class of every source reader.

    Subclasses set `source`, `version` and `units`, define `add_arguments`/`from_args` for the CLI,
    and implement `index()` and `build_item()`. Instances must stay small and picklable: they are
    shipped to every worker, so index data belongs in `WorkItem.payload`, not on `self`.
    """

    source: ClassVar[str]
    version: ClassVar[str]
    units: ClassVar[tuple[str, ...]]

    @property
    def catalog(self) -> Source:
        return get_source(self.source)

    @property
    def row_source(self) -> str:
        """The `source` written into rows (refer builders add their split scheme)."""
        return self.source

    def make_row(self, item: WorkItem, **fields: Any) -> dict[str, Any]:
        """`item`'s row: its id, source, split and provenance filled in, the rest from `fields`."""
        return make_row(
            source=self.row_source,
            split=item.split,
            native_key=item.key,
            builder=self.source,
            builder_version=self.version,
            **fields,
        )

    @classmethod
    @abstractmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Add the builder's own options (its input files) to its `regionkit build` parser."""

    @classmethod
    @abstractmethod
    def from_args(cls, args: argparse.Namespace) -> RegionBuilder:
        """Build an instance from parsed CLI arguments."""

    @abstractmethod
    def arguments(self) -> dict[str, Any]:
        """The options that determine the output; recorded in the manifest, compared on resume."""

    @abstractmethod
    def source_files(self) -> list[Path]:
        """The index files this build reads (hashed into the manifest)."""

    @abstractmethod
    def image_root(self) -> Path:
        """The folder image paths are resolved against and may not escape."""

    @abstractmethod
    def index(self, tasks: Tasks = IN_PROCESS) -> SourceIndex:
        """Read the source's index files once, on the driver, into work items; bulk parsing
        that splits into independent calls may run as `tasks` (on Ray, in a build)."""

    @abstractmethod
    def build_item(self, item: WorkItem) -> Iterator[Built | Rejected]:
        """Turn one work item into rows and rejections that together account for its units."""

    def build_items(self, items: list[WorkItem]) -> Iterator[Built | Rejected]:
        """Build a shard's items in order, checking that each one's units are all accounted for."""
        for item in items:
            accounted: Counter[str] = Counter()
            for outcome in self.build_item(item):
                accounted.update(outcome.units)
                yield outcome
            declared = Counter({unit: n for unit, n in item.units.items() if n})
            if +accounted != declared:
                raise RuntimeError(
                    f"builder {self.source!r} lost track of inputs for {item.split}/{item.key}: "
                    f"declared {dict(declared)}, accounted for {dict(+accounted)}"
                )

    def require_file(self, path: Path, what: str) -> Path:
        """`path` if it is a file, else a `BuilderInputError` naming it and the catalog entry."""
        if not path.is_file():
            raise BuilderInputError(
                f"{path}: file not found. Catalog source {self.source!r} needs {what}; "
                f"see `regionkit sources {self.source}` for the expected files and how to get them."
            )
        return path
