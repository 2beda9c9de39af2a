"""The refer layout (lichengunc/refer): RefCOCO, RefCOCO+, RefCOCOg and RefCLEF.

Each dataset is a folder with `instances.json` (COCO style: images, annotations with masks,
categories) and `refs(<split_by>).p`, a Python 2 pickle holding a list of refs:
`{ref_id, ann_id, image_id, split, category_id, file_name, sent_ids, sentences: [{sent, raw,
tokens, sent_id}]}`. A ref is one object and the sentences that describe it.

- The pickle is untrusted and written by Python 2: it is read with `safe_pickle`, which loads
  plain data only and decodes Python 2 byte strings (UTF-8, else latin-1).
- Refs hold no box or mask: `ann_id` joins to instances.json. The region box is the stored
  `bbox` (REFER's `getRefBox`, what REC benchmarks score against), the mask its segmentation:
  polygons for RefCOCO*, a list of compressed RLE dicts for RefCLEF (`[{size, counts}]`, which
  refer's `getMask` decodes and sums over the list).
- The image file is `images[image_id].file_name` in instances.json; a ref's own `file_name`
  (`COCO_train2014_000000581857_16.jpg`) has a suffix and names no file, so it is ignored.
- Split names match exactly: `--splits testA` does not take RefCLEF's `testAB`, as the REFER
  API's substring test does.
- Different split schemes (`--split-by`) assign the same images differently, so rows carry the
  source `<dataset>-<split_by>` (`refcocog-umd`) and are different datasets.

One row per (image, split): regions are the annotations its refs in that split refer to
(each once, in annotation-id order), groundings one per sentence (`sent`, the cleaned text) with
the index of its ref's region. `image_keys` holds `coco:<image_id>` (RefCLEF: `saiapr:<id>`), so
recipes can keep RefCOCO's val/test images (COCO train2014 images) out of training sets.

Units are refs and sentences: a ref is the dataset's record (an object with its expressions)
and sentences are what a model trains on and what papers count (RefCOCO unc: 50,000 refs,
142,210 sentences). A sentence without text is quarantined alone; a ref whose annotation, image
or mask is unusable is quarantined with its sentences; a ref left with no sentence goes too.
Annotations no ref refers to are not inputs of these datasets and are not counted.
"""

from __future__ import annotations

import argparse
import contextlib
from abc import abstractmethod
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from regionkit.builders.base import (
    BuilderInputError,
    Built,
    Rejected,
    SourceIndex,
    WorkItem,
)
from regionkit.builders.fields import RecordError, field_problem
from regionkit.builders.files import ImagePathError, checked_image
from regionkit.builders.instances import (
    Instances,
    annotation_region,
    read_instances,
)
from regionkit.builders.rooted import RootedBuilder
from regionkit.builders.safe_pickle import load_plain_pickle
from regionkit.builders.tasks import IN_PROCESS, Tasks

INSTANCES_FILE = "instances.json"
REQUIRED_REF_FIELDS = {"ref_id": int, "image_id": int, "split": str, "sentences": list}


class ReferringBuilder(RootedBuilder):
    """Refs (target annotations and sentences about them) joined to a COCO-style instances.json.

    Subclasses say where the refs are (`refs_pattern`, `refs_values`), how to read them
    (`read_refs`) and which annotations a ref targets (`ref_targets`); this class validates the
    refs, groups them into one work item per (split, image) and builds the rows.
    """

    version = "1.1"  # annotated boxes, dropped polygon parts and box-only tiny objects counted
    units = ("ref", "sentence")
    refs_pattern: ClassVar[str]
    image_key_prefix: ClassVar[str] = "coco"
    left_out_code: ClassVar[str] = "target_left_out"
    """The adjustment code counting annotations `usable_targets` leaves out of a ref."""

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ReferringBuilder:
        return cls(args.root, args.images, args.splits)

    def refs_values(self) -> dict[str, str]:
        """Values for the placeholders of `refs_pattern`."""
        return {}

    @property
    def refs_name(self) -> str:
        return self.refs_pattern.format(**self.refs_values())

    @abstractmethod
    def read_refs(self, path: Path) -> Any:
        """The refs file's content (a list of refs when well formed)."""

    @abstractmethod
    def ref_targets(self, ref: dict[str, Any]) -> list[int]:
        """The distinct annotation ids a ref refers to, sorted (empty: it refers to nothing).

        Raises `RecordError` when the ref's target fields are malformed.
        """

    def usable_targets(
        self, ref: dict[str, Any], anns: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """The annotations that are the ref's ground truth (all, unless a subclass says which).

        Raises `RecordError` when the ref and its annotations disagree.
        """
        return anns

    def source_files(self) -> list[Path]:
        return [
            self.expected_file(INSTANCES_FILE),
            self.expected_file(self.refs_pattern, **self.refs_values()),
        ]

    def index(self, tasks: Tasks = IN_PROCESS) -> SourceIndex:
        instances_path, refs_path = self.source_files()
        refs = self.read_refs(refs_path)
        if not isinstance(refs, list):
            raise BuilderInputError(
                f"{refs_path}: top level is a {type(refs).__name__}, not a list of refs"
            )
        instances = read_instances(instances_path, self._referenced(refs))
        index = SourceIndex()
        groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
        found: set[str] = set()
        seen: set[int] = set()
        for position, ref in enumerate(refs):
            split = ref.get("split") if isinstance(ref, dict) else None
            if isinstance(split, str):
                found.add(split)
                if not self.wants_split(split):
                    continue
            else:
                split = None
            read = self._read_ref(ref, position, split, instances, seen, index)
            if read is not None:
                groups.setdefault((split, ref["image_id"]), []).append(read)
        self.check_splits_found(found)
        for (split, image_id), group in sorted(groups.items()):
            index.add(self._work_item(split, image_id, group, instances))
        return index

    def _referenced(self, refs: list[Any]) -> set[int]:
        """The annotation ids the wanted splits' refs name: all of instances.json that the
        build reads (RefCOCO's file holds every annotation of its images, most never named)."""
        wanted: set[int] = set()
        for ref in refs:
            if not isinstance(ref, dict) or not self.wants_split(ref.get("split")):
                continue
            with contextlib.suppress(RecordError):  # a malformed ref is quarantined later
                wanted.update(self.ref_targets(ref))
        return wanted

    def _read_ref(
        self,
        ref: Any,
        position: int,
        split: str | None,
        instances: Instances,
        seen: set[int],
        index: SourceIndex,
    ) -> dict[str, Any] | None:
        """A usable ref as plain data for its work item, or None once it is quarantined."""
        ref_id = ref.get("ref_id", f"#{position}") if isinstance(ref, dict) else f"#{position}"
        where = f"{self.refs_name}: ref {ref_id} (item {position})"
        sentences = ref.get("sentences") if isinstance(ref, dict) else None
        count = len(sentences) if isinstance(sentences, list) else 0
        try:
            targets, left_out = self._checked_targets(ref, instances, seen)
        except RecordError as error:
            rejected = Rejected(
                f"ref {ref_id}",
                error.code,
                f"{where}: {error}",
                {"ref": 1, "sentence": count},
                ref,
                self.refs_name,
            )
            index.reject(split, rejected)
            return None
        texts = self._texts(ref, where, split, index)
        if not texts:
            reason = "field 'sentences' is empty" if count == 0 else "no sentence is usable"
            rejected = Rejected(
                f"ref {ref_id}",
                "no_sentences",
                f"{where}: {reason}",
                {"ref": 1},
                ref,
                self.refs_name,
            )
            index.reject(split, rejected)
            return None
        return {
            "ref_id": ref_id,
            "targets": targets,
            "left_out": left_out,
            "texts": texts,
            "record": ref,
        }

    def _checked_targets(
        self, ref: Any, instances: Instances, seen: set[int]
    ) -> tuple[list[int], int]:
        """The ref's target annotation ids once its fields, image and annotations check out,
        and how many of its annotations are not ground truth (`usable_targets`)."""
        problem = field_problem(ref, REQUIRED_REF_FIELDS)
        if problem is not None:
            raise RecordError("malformed_ref", problem)
        targets = self.ref_targets(ref)
        if ref["ref_id"] in seen:
            raise RecordError("duplicate_ref", f"field 'ref_id': {ref['ref_id']} appears twice")
        seen.add(ref["ref_id"])
        image_id = ref["image_id"]
        if image_id not in instances.images:
            raise _unusable(instances, "image", image_id, "image_id")
        anns = []
        for ann_id in targets:
            ann = instances.annotations.get(ann_id)
            if ann is None:
                raise _unusable(instances, "annotation", ann_id, "ann_id")
            if ann["image_id"] != image_id:
                raise RecordError(
                    "annotation_image_mismatch",
                    f"field 'ann_id': annotation {ann_id} is on image {ann['image_id']}, "
                    f"not on the ref's image {image_id}",
                )
            anns.append(ann)
        kept = self.usable_targets(ref, anns)
        return [ann["id"] for ann in kept], len(anns) - len(kept)

    def _texts(
        self, ref: dict[str, Any], where: str, split: str | None, index: SourceIndex
    ) -> list[str]:
        """The texts of the ref's usable sentences; each unusable one is quarantined alone."""
        texts = []
        for i, sentence in enumerate(ref["sentences"]):
            problem, code = field_problem(sentence, {"sent": str}), "malformed_sentence"
            if problem is None and not sentence["sent"].strip():
                problem, code = "field 'sent' is blank", "empty_sentence"
            if problem is None:
                texts.append(sentence["sent"])
                continue
            sent_id = sentence.get("sent_id", f"#{i}") if isinstance(sentence, dict) else f"#{i}"
            rejected = Rejected(
                f"ref {ref['ref_id']} sentence {sent_id}",
                code,
                f"{where}: sentences[{i}]: {problem}",
                {"sentence": 1},
                sentence,
                self.refs_name,
            )
            index.reject(split, rejected)
        return texts

    def _work_item(
        self, split: str, image_id: int, refs: list[dict[str, Any]], instances: Instances
    ) -> WorkItem:
        refs = sorted(refs, key=lambda r: r["ref_id"])
        anns = [instances.annotations[a] for a in sorted({a for r in refs for a in r["targets"]})]
        return WorkItem(
            split=split,
            key=str(image_id),
            payload={
                "image": instances.images[image_id],
                "annotations": anns,
                "categories": {a["id"]: instances.categories[a["category_id"]] for a in anns},
                "refs": refs,
            },
            units=_units(refs),
        )

    def build_item(self, item: WorkItem) -> Iterator[Built | Rejected]:
        image, refs = item.payload["image"], item.payload["refs"]
        width, height = image["width"], image["height"]
        try:
            path, _ = checked_image(self.images, image["file_name"], (width, height))
        except ImagePathError as error:
            yield Rejected(
                f"image {image['id']}",
                error.code,
                f"{INSTANCES_FILE}: image {image['id']} ({image['file_name']}): {error}",
                item.units,
                {"image": image, "refs": [r["record"] for r in refs]},
                INSTANCES_FILE,
            )
            return
        regions, failures = self._regions(item.payload, width, height)
        kept: list[dict[str, Any]] = []
        for ref in refs:
            failed = [a for a in ref["targets"] if a in failures]
            if not failed:
                kept.append(ref)
                continue
            ann, error = failures[failed[0]]
            yield Rejected(
                f"ref {ref['ref_id']}",
                error.code,
                f"{INSTANCES_FILE}: annotation {ann['id']} (image {image['id']}), a target of "
                f"ref {ref['ref_id']}: {error}",
                {"ref": 1, "sentence": len(ref["texts"])},
                {"ref": ref["record"], "annotation": ann},
                INSTANCES_FILE,
            )
        if kept:
            row = self._row(item, str(path), image, {a: r for a, (r, _) in regions.items()}, kept)
            adjustments: Counter[str] = Counter()
            for ann_id in {a for ref in kept for a in ref["targets"]}:
                adjustments.update(regions[ann_id][1])
            left_out = sum(ref["left_out"] for ref in kept)
            if left_out:
                adjustments[self.left_out_code] += left_out
            yield Built(row, _units(kept), adjustments)

    def _regions(
        self, payload: dict[str, Any], width: int, height: int
    ) -> tuple[
        dict[int, tuple[dict[str, Any], Counter[str]]],
        dict[int, tuple[dict[str, Any], RecordError]],
    ]:
        """Each target annotation as a region with its repairs, or with why it cannot be one."""
        regions, failures = {}, {}
        for ann in payload["annotations"]:
            adjustments: Counter[str] = Counter()
            try:
                category = payload["categories"][ann["id"]]
                region = annotation_region(ann, category, width, height, adjustments)
            except RecordError as error:
                failures[ann["id"]] = (ann, error)
            else:
                regions[ann["id"]] = (region, adjustments)
        return regions, failures

    def _row(
        self,
        item: WorkItem,
        path: str,
        image: dict[str, Any],
        regions: dict[int, dict[str, Any]],
        refs: list[dict[str, Any]],
    ) -> dict[str, Any]:
        """The row of an image's refs in one split: their regions once each, a grounding per
        sentence."""
        used = sorted({a for ref in refs for a in ref["targets"]})
        position = {ann_id: i for i, ann_id in enumerate(used)}
        groundings = [
            {"text": text, "regions": [position[a] for a in ref["targets"]]}
            for ref in refs
            for text in ref["texts"]
        ]
        return self.make_row(
            item,
            image_path=path,
            width=image["width"],
            height=image["height"],
            image_keys=[f"{self.image_key_prefix}:{image['id']}"],
            regions=[regions[a] for a in used],
            groundings=groundings,
            source_files=[INSTANCES_FILE, self.refs_name],
        )


def _units(refs: list[dict[str, Any]]) -> dict[str, int]:
    return {"ref": len(refs), "sentence": sum(len(r["texts"]) for r in refs)}


def _unusable(instances: Instances, unit: str, record_id: int, field: str) -> RecordError:
    """The error for a ref naming an image or annotation that is absent or whose record is bad."""
    problem = instances.problem_for(unit, record_id)
    if problem is None:
        return RecordError(
            f"unknown_{unit}", f"field {field!r}: {record_id} is not an {unit} in {instances.file}"
        )
    return RecordError(
        f"bad_{unit}", f"field {field!r}: {unit} {record_id} is unusable: {problem.reason}"
    )


class ReferBuilder(ReferringBuilder):
    """One refer dataset: `refs(<split_by>).p` (a Python 2 pickle) beside instances.json."""

    refs_pattern = "refs({split_by}).p"
    split_by_choices: ClassVar[tuple[str, ...]]
    """The split schemes the dataset ships; the first is the default."""

    def __init__(
        self,
        root: Path,
        images: Path,
        splits: Iterable[str] | None = None,
        split_by: str | None = None,
    ) -> None:
        super().__init__(root, images, splits)
        split_by = split_by or self.split_by_choices[0]
        if split_by not in self.split_by_choices:
            raise BuilderInputError(
                f"{self.source} has no split scheme {split_by!r}; it ships "
                f"{', '.join(self.split_by_choices)}"
            )
        self.split_by = split_by

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--split-by",
            choices=cls.split_by_choices,
            default=cls.split_by_choices[0],
            help=f"the split scheme: reads refs(<split_by>).p; rows get the source "
            f"'{cls.source}-<split_by>' (default: {cls.split_by_choices[0]})",
        )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ReferBuilder:
        return cls(args.root, args.images, args.splits, args.split_by)

    def arguments(self) -> dict[str, Any]:
        return {**super().arguments(), "split_by": self.split_by}

    @property
    def row_source(self) -> str:
        return f"{self.source}-{self.split_by}"

    def refs_values(self) -> dict[str, str]:
        return {"split_by": self.split_by}

    def read_refs(self, path: Path) -> Any:
        return load_plain_pickle(path)

    def ref_targets(self, ref: dict[str, Any]) -> list[int]:
        problem = field_problem(ref, {"ann_id": int})
        if problem is not None:
            raise RecordError("malformed_ref", problem)
        return [ref["ann_id"]]

    def usable_targets(
        self, ref: dict[str, Any], anns: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """A ref's `category_id` is its annotation's; a disagreement means a broken join."""
        (ann,) = anns
        if "category_id" in ref and ref["category_id"] != ann["category_id"]:
            raise RecordError(
                "category_mismatch",
                f"field 'category_id': {ref['category_id']!r}, but its annotation {ann['id']} "
                f"has category {ann['category_id']}",
            )
        return anns


class RefCocoBuilder(ReferBuilder):
    """RefCOCO (UNC): `--split-by unc` (train, val, testA, testB) or `google`."""

    source = "refcoco"
    split_by_choices = ("unc", "google")


class RefCocoPlusBuilder(ReferBuilder):
    """RefCOCO+ (UNC), whose sentences avoid location words."""

    source = "refcoco+"
    split_by_choices = ("unc",)


class RefCocogBuilder(ReferBuilder):
    """RefCOCOg: `--split-by umd` (train, val, test; the usual one) or `google` (train, val)."""

    source = "refcocog"
    split_by_choices = ("umd", "google")


class RefClefBuilder(ReferBuilder):
    """RefCLEF (ReferItGame) on SAIAPR TC-12 images, with RLE masks."""

    source = "refclef"
    split_by_choices = ("unc", "berkeley")
    image_key_prefix = "saiapr"
