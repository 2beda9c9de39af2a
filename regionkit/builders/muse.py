"""MUSE (PixelLM's multi-target reasoning segmentation): one row per image record, with dialogue.

Reads `muse_{split}.json` (train, val, test_less, test_many; some mirrors spell it
`MUSE_{split}.json`, either is accepted, both at once is an error) as PixelLM ships it: one JSON
list of image records, each with `height`, `width`, `ann_list` (COCO/LVIS instances),
`questions`, `answers` (one list of instance dicts per question) and optional `text_answers`
(one string per question, one `{seg}` per instance of `answers[i]`, in order).

Quirks and how they map:
- Image location: `file_name` means COCO train2014 (`train2014/<file_name>`) even when a
  `coco_url` is also present; otherwise `coco_url` names `train2017/` or `val2017/` (its parent
  folder) and the file (its basename). LVIS-style records carry only `coco_url`.
- Native key: the COCO image id in the file name (`COCO_train2014_000000581857.jpg`,
  `000000391895.jpg`), else the record's integer `id`. Several records on one image get
  `<id>`, `<id>-2`, `<id>-3`, ... in file order (quarantined records keep their number), so
  appending or repairing records never renames other rows. `image_keys` is `coco:<id>`.
- Optional fields set to JSON null count as absent; a record without `ann_list` takes its instances
  from `answers` alone. Compressed RLE is accepted too, though PixelLM's loader cannot read it.
- Instances are embedded dicts, not references: the regions are every `ann_list` instance, then
  every instance of `answers` not already seen, in order of first appearance. Two occurrences
  are one instance when they share an `id` (compared as text), or when their `segmentation` is
  identical and they do not carry two different ids. The first occurrence's segmentation and
  `category_name` make the region (the stored `bbox`, clipped, and the mask from polygons or
  RLE; `regions.boxed_region`). Every distinct `rephrased_name` becomes a grounding
  `{text, regions: [k]}`: it is a referring phrase for that one instance.
- Messages: per question, user = `questions[i]`; assistant = `text_answers[i]` with each `{seg}`
  replaced in order by `<segK>`, K the region of `answers[i][j]`. Without `text_answers` the
  answer lists each instance as `<rephrased_name or category_name> <segK>`, joined by ", " and
  a final " and ", ending with "." (MUSE has descriptions-only answers, PixelLM issue #14).
  Rows with messages have task `reason_seg`, rows whose questions all went to quarantine
  `regions`.

Units are `image` (a record), `question` and `instance`. What PixelLM's loader drops silently
goes to quarantine here: a question whose `{seg}` count differs from its instance count, every
question of a record whose `questions`, `answers` and `text_answers` differ in length (pairing
by position cannot be trusted), a question with no instance and no text answer, a question
needing a quarantined instance (so no `<segK>` dangles) or one whose mask covers no pixel (a
tiny instance stays a box-only region, but no answer can segment it), and text that already
holds markup.
"""

from __future__ import annotations

import argparse
import posixpath
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from regionkit.builders.base import BuilderInputError, Built, Rejected, SourceIndex, WorkItem
from regionkit.builders.fields import RecordError, field_problem, json_kind
from regionkit.builders.files import ImagePathError, checked_image, load_json
from regionkit.builders.regions import boxed_region, stored_box
from regionkit.builders.rooted import RootedBuilder
from regionkit.builders.tasks import IN_PROCESS, Tasks

FILE_PATTERNS = ("muse_{split}.json", "MUSE_{split}.json")
FILE_NAME_FOLDER = "train2014"
URL_FOLDERS = ("train2017", "val2017")
SEG_PLACEHOLDER = "{seg}"
MARKUP = re.compile(r"<(?:region|seg)\d+>|<rej>")
TRAILING_DIGITS = re.compile(r"(\d+)\D*$")

REQUIRED_RECORD_FIELDS = {"height": int, "width": int, "questions": list, "answers": list}
OPTIONAL_RECORD_FIELDS = {"file_name": str, "coco_url": str, "ann_list": list, "text_answers": list}
REQUIRED_INSTANCE_FIELDS = {"segmentation": (list, dict), "category_name": str}


@dataclass
class Instance:
    """One distinct instance of a record, however many times the record embeds it.

    Attributes:
        origin: where it first appears, e.g. `ann_list[2]` or `answers[1][0]`.
        value: that first occurrence as the file holds it.
        names: the distinct non-blank `rephrased_name`s over all its occurrences.
    """

    origin: str
    value: Any
    names: list[str] = field(default_factory=list)

    @property
    def region_id(self) -> str:
        """The instance's own `id` as text when it has one, else where it first appears."""
        ident = _instance_id(self.value)
        return self.origin if ident is None else ident


def _instance_id(value: Any) -> str | None:
    if not isinstance(value, dict):
        return None
    ident = value.get("id")
    if isinstance(ident, bool) or not isinstance(ident, (int, str)):
        return None
    return str(ident)


def _segmentation_key(value: Any) -> bytes | None:
    """The segmentation as canonical bytes, to match instances that carry no id; None if it has
    none or cannot be one (nested past orjson's depth limit: it will fail as a mask anyway)."""
    if not isinstance(value, dict) or "segmentation" not in value:
        return None
    try:
        return orjson.dumps(value["segmentation"], option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return None


def _rephrased_name(value: Any) -> str | None:
    name = value.get("rephrased_name") if isinstance(value, dict) else None
    return name.strip() if isinstance(name, str) and name.strip() else None


class _InstanceTable:
    """Distinct instances in order of first appearance, matched by id, else by segmentation."""

    def __init__(self) -> None:
        self.instances: list[Instance] = []
        self.by_id: dict[str, int] = {}
        self.by_segmentation: dict[bytes, int] = {}

    def add(self, value: Any, origin: str) -> int:
        """The index of `value`'s instance, adding it when no earlier occurrence matches."""
        ident, segmentation = _instance_id(value), _segmentation_key(value)
        index = self.by_id.get(ident) if ident is not None else None
        if index is None and segmentation is not None:
            candidate = self.by_segmentation.get(segmentation)
            # two copies that both carry ids are one instance only when the ids agree
            if candidate is not None and (
                ident is None or _instance_id(self.instances[candidate].value) is None
            ):
                index = candidate
        if index is None:
            index = len(self.instances)
            self.instances.append(Instance(origin, value))
            if segmentation is not None:
                self.by_segmentation.setdefault(segmentation, index)
        if ident is not None:
            self.by_id.setdefault(ident, index)
        name = _rephrased_name(value)
        if name is not None and name not in self.instances[index].names:
            self.instances[index].names.append(name)
        return index


def collect_instances(record: Any) -> tuple[list[Instance], list[list[int] | None]]:
    """A record's distinct instances and, per answer, its instances' indices (None if no list).

    Lenient on purpose: it also counts the instances of records that are otherwise malformed,
    so their quarantine line carries the units they hold.
    """
    table = _InstanceTable()
    if not isinstance(record, dict):
        return [], []
    ann_list = record.get("ann_list")
    for k, value in enumerate(ann_list if isinstance(ann_list, list) else []):
        table.add(value, f"ann_list[{k}]")
    answers = record.get("answers")
    targets: list[list[int] | None] = []
    for i, answer in enumerate(answers if isinstance(answers, list) else []):
        if isinstance(answer, list):
            targets.append(
                [table.add(value, f"answers[{i}][{j}]") for j, value in enumerate(answer)]
            )
        else:
            targets.append(None)
    return table.instances, targets


def record_units(record: Any) -> dict[str, int]:
    """The units a record holds: itself, its questions and its distinct instances."""
    questions = record.get("questions") if isinstance(record, dict) else None
    return {
        "image": 1,
        "question": len(questions) if isinstance(questions, list) else 0,
        "instance": len(collect_instances(record)[0]),
    }


def record_problem(record: Any) -> str | None:
    """The first record-level field that is missing, mistyped or out of range, else None.

    Optional fields set to JSON null count as absent.
    """
    problem = field_problem(record, REQUIRED_RECORD_FIELDS)
    if problem is not None:
        return problem
    for name, kind in OPTIONAL_RECORD_FIELDS.items():
        value = record.get(name)
        if value is not None and not isinstance(value, kind):
            return f"field {name!r} should be {kind.__name__}, got {type(value).__name__}"
    if record["width"] <= 0 or record["height"] <= 0:
        return (
            f"fields 'width', 'height': {record['width']}x{record['height']} is not an image size"
        )
    return None


def image_location(record: Any) -> tuple[int, str]:
    """(COCO image id, path under --images) of a record, or `ValueError` saying what is wrong.

    PixelLM reads `file_name` from train2014 first and falls back to `coco_url`, which names
    a train2017 or val2017 image. The id is the number the file name ends with, else `id`.
    """
    if not isinstance(record, dict):
        raise ValueError(f"record is {json_kind(record)}, not an object")
    file_name, url = record.get("file_name"), record.get("coco_url")
    if isinstance(file_name, str) and file_name:
        relative = posixpath.join(FILE_NAME_FOLDER, file_name)
    elif isinstance(url, str) and url:
        parts = urlsplit(url).path.rstrip("/").split("/")
        if len(parts) < 2 or parts[-2] not in URL_FOLDERS or not parts[-1]:
            raise ValueError(
                f"field 'coco_url': {url!r} names no image in {' or '.join(URL_FOLDERS)}"
            )
        relative = posixpath.join(parts[-2], parts[-1])
    else:
        raise ValueError("neither 'file_name' nor 'coco_url' names the image")
    match = TRAILING_DIGITS.search(posixpath.splitext(posixpath.basename(relative))[0])
    if match is not None:
        return int(match.group(1)), relative
    ident = record.get("id")
    if isinstance(ident, int) and not isinstance(ident, bool):
        return ident, relative
    raise ValueError(f"cannot tell the COCO image id: {relative!r} holds no number and no 'id'")


def fill_placeholders(text: str, regions: list[int]) -> str:
    """`text` with its `{seg}` placeholders replaced, in order, by `<segK>` for `regions`."""
    pieces = text.split(SEG_PLACEHOLDER)
    filled = [pieces[0]]
    for region, piece in zip(regions, pieces[1:], strict=True):
        filled += [f"<seg{region}>", piece]
    return "".join(filled)


def template_answer(names: list[str], regions: list[int]) -> str:
    """`a <seg0>.`, `a <seg0> and b <seg2>.`, `a <seg0>, b <seg1> and c <seg3>.`"""
    parts = [f"{name} <seg{region}>" for name, region in zip(names, regions, strict=True)]
    body = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return body + "."


def _checked_question(
    i: int, record: dict[str, Any], targets: list[int] | None
) -> tuple[str, str | None, list[int]]:
    """(question, text answer or None, targets) of question i, or `RecordError` for bad fields."""
    question = record["questions"][i]
    text_answers = record.get("text_answers")
    text_answer = None if text_answers is None else text_answers[i]
    if not isinstance(question, str) or not question.strip():
        raise RecordError(
            "malformed_question",
            f"field 'questions'[{i}] should be a non-empty string, got {question!r}",
        )
    if targets is None:
        raise RecordError(
            "malformed_question",
            f"field 'answers'[{i}] should be a list of instances, "
            f"got {type(record['answers'][i]).__name__}",
        )
    if text_answers is not None and not isinstance(text_answer, str):
        raise RecordError(
            "malformed_question",
            f"field 'text_answers'[{i}] should be str, got {type(text_answer).__name__}",
        )
    if text_answer is not None and text_answer.count(SEG_PLACEHOLDER) != len(targets):
        raise RecordError(
            "seg_count_mismatch",
            f"field 'text_answers'[{i}] has {text_answer.count(SEG_PLACEHOLDER)} "
            f"'{SEG_PLACEHOLDER}' placeholders but 'answers'[{i}] lists {len(targets)} instances",
        )
    if text_answer is None and not targets:
        raise RecordError(
            "empty_answer",
            f"field 'answers'[{i}] lists no instance and the record has no 'text_answers', "
            "so there is no answer to give",
        )
    return question, text_answer, targets


def _check_no_markup(texts: dict[str, str]) -> None:
    """`RecordError` when source text already holds `<segK>`, `<regionK>` or `<rej>`.

    The engine reads that markup as references into the row's regions, so a stray one would
    point at a region the text never meant.
    """
    for label, text in texts.items():
        found = MARKUP.search(text)
        if found is not None:
            raise RecordError(
                "markup_in_text",
                f"field {label} already holds {found.group()!r}, which would be read as "
                "region markup",
            )


def _answer_name(occurrence: Any, instance: Instance) -> str:
    """How a templated answer names an instance: this occurrence's rephrased name, else class."""
    category = occurrence.get("category_name") if isinstance(occurrence, dict) else None
    if not isinstance(category, str) or not category.strip():
        category = instance.value["category_name"]
    return _rephrased_name(occurrence) or category.strip()


@dataclass(frozen=True)
class _Where:
    """How messages name a record: its file, key and position in the file."""

    file: str
    key: str
    position: int

    def __str__(self) -> str:
        return f"{self.file}: record {self.key} (records[{self.position}])"


class MuseBuilder(RootedBuilder):
    """`regionkit build muse --root <folder with muse_*.json> --images <COCO image root>`."""

    source = "muse"
    version = "1.1"  # annotated boxes, dropped polygon parts and box-only tiny objects counted
    units = ("image", "question", "instance")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> MuseBuilder:
        return cls(args.root, args.images, args.splits)

    def source_files(self) -> list[Path]:
        return list(self._split_files().values())

    def _split_files(self) -> dict[str, Path]:
        """Split -> file under either spelling: those asked for with --splits, else all present."""
        wanted = ", ".join(FILE_PATTERNS[0].format(split=s) for s in self.catalog.splits)
        return self.split_files(
            *FILE_PATTERNS,
            none_found=f"no MUSE file found. Catalog source 'muse' needs one or more of {wanted} "
            "(or MUSE_<split>.json) under --root; see `regionkit sources muse`.",
        )

    def index(self, tasks: Tasks = IN_PROCESS) -> SourceIndex:
        index = SourceIndex()
        for split, path in self._split_files().items():
            records = load_json(path)
            if not isinstance(records, list):
                raise BuilderInputError(
                    f"{path}: top level is a JSON {type(records).__name__}, not a list of "
                    "image records"
                )
            self._index_split(index, split, path.name, records)
        return index

    def _index_split(self, index: SourceIndex, split: str, file: str, records: list[Any]) -> None:
        """Key every record that names an image, reject the malformed, add the rest in key order."""
        seen: Counter[int] = Counter()
        items: list[tuple[tuple[int, int], WorkItem]] = []
        for position, record in enumerate(records):
            try:
                image_id, relative = image_location(record)
            except ValueError as error:
                problem, key, order = str(error), None, None
            else:
                seen[image_id] += 1
                order = (image_id, seen[image_id])
                key = str(image_id) if seen[image_id] == 1 else f"{image_id}-{seen[image_id]}"
                problem = record_problem(record)
            units = record_units(record)
            if problem is not None:
                label = f"record {key}" if key else f"records[{position}]"
                index.reject(
                    split,
                    Rejected(
                        label,
                        "malformed_record",
                        f"{file}: records[{position}]: {problem}",
                        units,
                        record,
                        file,
                    ),
                )
                continue
            payload = {
                "record": record,
                "file": file,
                "position": position,
                "image": relative,
                "image_id": image_id,
            }
            items.append((order, WorkItem(split, key, payload, units)))
        for _, item in sorted(items, key=lambda pair: pair[0]):
            index.add(item)

    def build_item(self, item: WorkItem) -> Iterator[Built | Rejected]:
        payload = item.payload
        record = payload["record"]
        where = _Where(payload["file"], item.key, payload["position"])
        width, height = record["width"], record["height"]
        try:
            path, _ = checked_image(self.images, payload["image"], (width, height))
        except ImagePathError as error:
            yield Rejected(
                f"record {item.key}",
                error.code,
                f"{where}: image {payload['image']!r}: {error}",
                item.units,
                record,
                where.file,
            )
            return

        instances, targets = collect_instances(record)
        regions: list[dict[str, Any]] = []
        region_of: dict[int, int] = {}
        unusable: dict[int, tuple[str, str]] = {}
        adjustments: Counter[str] = Counter()
        for n, instance in enumerate(instances):
            try:
                region = self._region(instance, width, height, adjustments)
            except RecordError as error:
                unusable[n] = ("instance_quarantined", f"quarantined as {error.code}")
                yield Rejected(
                    f"record {item.key} instance {instance.region_id}",
                    error.code,
                    f"{where}: {instance.origin}: {error}",
                    {"instance": 1},
                    instance.value,
                    where.file,
                )
                continue
            region_of[n] = len(regions)
            regions.append(region)
            if region["mask"] is None:
                unusable[n] = ("seg_target_without_mask", "whose mask covers no pixel")

        messages: list[dict[str, str]] = []
        questions_kept = 0
        for outcome in self._dialogue(record, targets, instances, region_of, unusable, where):
            if isinstance(outcome, Rejected):
                yield outcome
            else:
                messages += outcome
                questions_kept += 1

        groundings = [
            {"text": name, "regions": [region_of[n]]}
            for n, instance in enumerate(instances)
            if n in region_of
            for name in instance.names
        ]
        yield Built(
            self.make_row(
                item,
                image_path=str(path),
                width=width,
                height=height,
                image_keys=[f"coco:{payload['image_id']}"],
                regions=regions,
                groundings=groundings,
                messages=messages,
                task="reason_seg" if messages else "regions",
                source_files=[where.file],
            ),
            {"image": 1, "question": questions_kept, "instance": len(regions)},
            adjustments,
        )

    def _region(
        self, instance: Instance, width: int, height: int, adjustments: Counter[str]
    ) -> dict[str, Any]:
        """One instance as a region (its stored box and its mask), or `RecordError` saying why
        not; repairs are counted in `adjustments` (`regions.boxed_region`)."""
        value = instance.value
        if not isinstance(value, dict):
            raise RecordError(
                "malformed_instance", f"instance is {json_kind(value)}, not an object"
            )
        problem = field_problem(value, REQUIRED_INSTANCE_FIELDS)
        if problem is not None:
            raise RecordError("malformed_instance", problem)
        return boxed_region(
            instance.region_id,
            stored_box(value),
            value["segmentation"],
            width,
            height,
            adjustments,
            category=value["category_name"],
        )

    def _dialogue(
        self,
        record: dict[str, Any],
        targets: list[list[int] | None],
        instances: list[Instance],
        region_of: dict[int, int],
        unusable: dict[int, tuple[str, str]],
        where: _Where,
    ) -> Iterator[list[dict[str, str]] | Rejected]:
        """Per question, its user and assistant messages or its rejection.

        `unusable` holds the instances no answer may segment, as (code, why).
        """
        questions, answers = record["questions"], record["answers"]
        text_answers = record.get("text_answers")
        lengths = {"questions": len(questions), "answers": len(answers)}
        if text_answers is not None:
            lengths["text_answers"] = len(text_answers)
        if len(set(lengths.values())) > 1:
            counts = ", ".join(f"{name!r} has {n}" for name, n in lengths.items())
            yield Rejected(
                f"record {where.key} questions",
                "length_mismatch",
                f"{where}: fields {counts} entries; questions cannot be paired with their "
                "answers by position, so none is used",
                {"question": len(questions)},
                {name: record.get(name) for name in lengths},
                where.file,
            )
            return
        for i, question in enumerate(questions):
            try:
                yield self._turn(i, record, targets[i], instances, region_of, unusable)
            except RecordError as error:
                original = {"question": question, "answer": answers[i]}
                if text_answers is not None:
                    original["text_answer"] = text_answers[i]
                yield Rejected(
                    f"record {where.key} question {i}",
                    error.code,
                    f"{where}: question {i}: {error}",
                    {"question": 1},
                    original,
                    where.file,
                )

    def _turn(
        self,
        i: int,
        record: dict[str, Any],
        targets: list[int] | None,
        instances: list[Instance],
        region_of: dict[int, int],
        unusable: dict[int, tuple[str, str]],
    ) -> list[dict[str, str]]:
        """Question i as a user and an assistant message, or `RecordError` saying why not."""
        question, text_answer, targets = _checked_question(i, record, targets)
        for j, n in enumerate(targets):
            if n in unusable:
                code, why = unusable[n]
                raise RecordError(
                    code,
                    f"field 'answers'[{i}][{j}] is instance {instances[n].region_id} "
                    f"({instances[n].origin}), {why}",
                )
        regions = [region_of[n] for n in targets]
        if text_answer is not None:
            _check_no_markup({f"'questions'[{i}]": question, f"'text_answers'[{i}]": text_answer})
            answer = fill_placeholders(text_answer, regions)
        else:
            names = [
                _answer_name(record["answers"][i][j], instances[n]) for j, n in enumerate(targets)
            ]
            named = {f"'answers'[{i}][{j}] name": name for j, name in enumerate(names)}
            _check_no_markup({f"'questions'[{i}]": question, **named})
            answer = template_answer(names, regions)
        return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
