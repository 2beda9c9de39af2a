"""VCR (Visual Commonsense Reasoning): one row per question, every detected object a region.

Reads `{split}.jsonl` (train, val, test) as `vcr1annots.zip` unpacks it, and under `--images`
(`vcr1images/`) each image `<movie_dir>/<clip>@<k>.jpg` with its metadata `.json` beside it.

Quirks and what becomes of them:

- A line is one question about one image (`annot_id`, e.g. `val-1`, is the native key, so the
  row id is `vcr:val:val-1`); several questions share an image, so rows repeat it, each with
  the image key `vcr:<img_fn without .jpg>`.
- Regions are all objects of the image's metadata: bbox = `boxes[k][:4]` (float xyxy, clipped to
  the image), score = `boxes[k][4]` (detector confidence), mask = the union of the polygons in
  `segms[k]` (nested `[[x, y], ...]` pairs), category = `names[k]`, id = `k` as a string. Polygon
  parts of fewer than 3 points are contours of no area and are left out of the union (counted
  as `polygon_part_dropped`); an object whose mask covers no pixel stays a box-only region
  (`mask_covers_no_pixel`), as in every builder (`regions.boxed_region`).
- The line's `objects` must equal the metadata's `names`: the tokens index both, so a line whose
  objects differ cannot be trusted to point at the right boxes and is quarantined whole
  (`objects_mismatch`).
- A token is a word or a list of 0-based object indices; a list means "these together", so
  `[1, 2]` renders as `<region1> and <region2>` and three or more as `<region1>, <region2> and
  <region3>`. K in `<regionK>` is the object's position in the row's `regions`: when an object is
  quarantined, later ones move up, and a question that mentions a quarantined object anywhere
  (question, any choice) is quarantined whole so no markup points at a missing region.
- Words join with single spaces, except that `, . ? ! ; : ) %`, `n't` and tokens starting with an
  apostrophe (`'s`, `'re`, ...) attach to the word before, and `(` attaches to the word after.
- The `*_orig` strings number objects from 1 and are not used; the tokens carry the same text.
- r2c reads "everyone" as every person in the image; that is a model heuristic, not annotation,
  so the word stays text.
- Messages keep both VCR tasks with their labels (choices are lettered A-D):

      user:      <question>\\nA. <answer 0>\\nB. <answer 1>\\nC. <answer 2>\\nD. <answer 3>
      assistant: <letter>. <correct answer>
      user:      Why?\\nA. <rationale 0>\\n...\\nD. <rationale 3>
      assistant: <letter>. <correct rationale>

  The test split ships without labels: its rows carry the two user turns only. Labels are
  required in every other split.

Units are `question` (a jsonl line) and `object` (one entry of a line's `objects`, so an object
counts once per question that carries it). A line that is not JSON is quarantined with its file
and line number and the build goes on; a file none of whose lines parse is an input error.
"""

from __future__ import annotations

import argparse
import math
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from regionkit.builders.base import BuilderInputError, Built, Rejected, SourceIndex, WorkItem
from regionkit.builders.fields import RecordError, field_problem
from regionkit.builders.files import ImagePathError, checked_image, load_json, resolve_image
from regionkit.builders.regions import boxed_region
from regionkit.builders.rooted import RootedBuilder
from regionkit.builders.tasks import IN_PROCESS, Tasks
from regionkit.catalog.boxes import box_is_empty, clip_box

SPLIT_FILE = "{split}.jsonl"
UNLABELLED_SPLIT = "test"
REQUIRED_LINE_FIELDS = {
    "annot_id": str,
    "img_fn": str,
    "metadata_fn": str,
    "objects": list,
    "question": list,
    "answer_choices": list,
    "rationale_choices": list,
}
CHOICE_FIELDS = ("answer_choices", "rationale_choices")
LABEL_FIELDS = ("answer_label", "rationale_label")
REQUIRED_METADATA_FIELDS = {
    "boxes": list,
    "segms": list,
    "names": list,
    "width": int,
    "height": int,
}
LETTERS = "ABCD"
WHY = "Why?"
ATTACH_LEFT = frozenset({",", ".", "?", "!", ";", ":", ")", "%", "n't"})
ATTACH_RIGHT = frozenset({"("})


class _MetadataError(RecordError):
    """A question made unusable by its image's metadata file, not by its jsonl line: the
    quarantine line names that file (`metadata_fn`) as the one at fault."""


def natural_key(text: str) -> tuple[tuple[str | tuple[int, str], ...], str]:
    """Sort `val-2` before `val-10`, so rows follow the files' numbering.

    A digit run compares by (length, digits), which orders numbers without `int()`: that refuses
    runs past 4,300 digits, and annotation ids are untrusted.
    """
    parts = tuple(
        (len(p.lstrip("0")), p.lstrip("0")) if i % 2 else p
        for i, p in enumerate(re.split(r"([0-9]+)", text))
    )
    return parts, text


def object_units(line: Any) -> dict[str, int]:
    """The units a line accounts for: itself and each entry of its `objects`."""
    objects = line.get("objects") if isinstance(line, dict) else None
    count = len(objects) if isinstance(objects, list) else 0
    return {"question": 1, "object": count} if count else {"question": 1}


def texts(line: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """Every token list of a line with the field it sits in: question, then the choices."""
    yield "question", line["question"]
    for name in CHOICE_FIELDS:
        for i, choice in enumerate(line[name]):
            yield f"{name}[{i}]", choice


def referenced_objects(line: dict[str, Any]) -> set[int]:
    """The object indices a line's question and choices mention."""
    return {
        i for _, tokens in texts(line) for token in tokens if isinstance(token, list) for i in token
    }


def _token_problem(token: Any, num_objects: int) -> tuple[str, str] | None:
    if isinstance(token, str):
        return None
    if (
        not isinstance(token, list)
        or not token
        or not all(isinstance(i, int) and not isinstance(i, bool) for i in token)
    ):
        return "malformed_question", f"token {token!r} is neither a word nor a list of indices"
    outside = [i for i in token if not 0 <= i < num_objects]
    if outside:
        return (
            "index_out_of_range",
            f"object index {outside} is out of range for the {num_objects} objects",
        )
    return None


def _label_problem(line: dict[str, Any], split: str) -> tuple[str, str] | None:
    present = [name for name in LABEL_FIELDS if name in line]
    if not present and split == UNLABELLED_SPLIT:
        return None
    for label, choices in zip(LABEL_FIELDS, CHOICE_FIELDS, strict=True):
        if label not in line:
            return (
                "malformed_question",
                f"field {label!r} is missing (only the {UNLABELLED_SPLIT} split has no labels)",
            )
        value = line[label]
        if not isinstance(value, int) or isinstance(value, bool):
            return (
                "malformed_question",
                f"field {label!r} should be int, got {type(value).__name__}",
            )
        if not 0 <= value < len(line[choices]):
            return (
                "label_out_of_range",
                f"field {label!r}: {value} is not a choice index (0..{len(line[choices]) - 1})",
            )
    return None


def line_problem(line: Any, split: str) -> tuple[str, str] | None:
    """The first thing that makes a parsed line unusable, as (code, message), else None."""
    problem = field_problem(line, REQUIRED_LINE_FIELDS)
    if problem is not None:
        return "malformed_question", problem
    for k, name in enumerate(line["objects"]):
        if not isinstance(name, str):
            return "malformed_question", f"field 'objects'[{k}] should be str, got {name!r}"
    for name in CHOICE_FIELDS:
        if len(line[name]) != len(LETTERS):
            return (
                "malformed_question",
                f"field {name!r} has {len(line[name])} choices; VCR has {len(LETTERS)}",
            )
    for where, tokens in texts(line):
        if not isinstance(tokens, list) or not tokens:
            return "malformed_question", f"field {where!r} should be a non-empty list of tokens"
        for token in tokens:
            problem = _token_problem(token, len(line["objects"]))
            if problem is not None:
                return problem[0], f"field {where!r}: {problem[1]}"
    return _label_problem(line, split)


def read_jsonl(path: Path) -> tuple[list[tuple[int, Any]], list[Rejected]]:
    """The parsed lines of a JSON Lines file with their numbers, and a rejection per bad line.

    Blank lines are skipped (they hold no record). A file with lines of which none parses is not
    JSON Lines at all (a wrong file, or a download cut off inside its first line): that is an
    input error, not a run of bad records.
    """
    parsed: list[tuple[int, Any]] = []
    bad: list[Rejected] = []
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            try:
                parsed.append((number, orjson.loads(raw)))
            except orjson.JSONDecodeError as error:
                cut = "; the file may be truncated" if not raw.endswith(b"\n") else ""
                bad.append(
                    Rejected(
                        f"line {number}",
                        "bad_json",
                        f"{path.name}: line {number}: not valid JSON ({error.msg}){cut}",
                        {"question": 1},
                        raw.decode("utf-8", errors="replace").rstrip("\r\n"),
                        path.name,
                    )
                )
    if not parsed:
        what = f"none of its {len(bad)} lines is valid JSON" if bad else "it holds no lines"
        raise BuilderInputError(
            f"{path}: not a JSON Lines file of VCR questions ({what}); download it again"
        )
    return parsed, bad


def render_tokens(tokens: list[Any], positions: dict[int, int]) -> str:
    """VCR tokens as text with `<regionK>` markup, K being the object's position in the row."""
    words = [token if isinstance(token, str) else refer(token, positions) for token in tokens]
    text = ""
    for word in words:
        attaches = word in ATTACH_LEFT or word.startswith("'")
        if text and not attaches and text[-1] not in ATTACH_RIGHT:
            text += " "
        text += word
    return text


def refer(indices: list[int], positions: dict[int, int]) -> str:
    """`[1]` -> `<region1>`; `[1, 2]` -> `<region1> and <region2>`; more -> `a, b and c`."""
    names = [f"<region{positions[i]}>" for i in indices]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def lettered(prompt: str, choices: list[str]) -> str:
    """A prompt followed by its choices, one per line as `A. ...`."""
    return "\n".join([prompt, *(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices))])


def vcr_messages(line: dict[str, Any], positions: dict[int, int]) -> list[dict[str, str]]:
    """Q -> A then QA -> R as user/assistant turns; unlabelled lines get the user turns only."""
    question = render_tokens(line["question"], positions)
    messages = []
    for prompt, choices_field, label_field in (
        (question, "answer_choices", "answer_label"),
        (WHY, "rationale_choices", "rationale_label"),
    ):
        choices = [render_tokens(c, positions) for c in line[choices_field]]
        messages.append({"role": "user", "content": lettered(prompt, choices)})
        if label_field in line:
            label = line[label_field]
            messages.append({"role": "assistant", "content": f"{LETTERS[label]}. {choices[label]}"})
    return messages


class VcrBuilder(RootedBuilder):
    """`regionkit build vcr --root vcr1annots/ --images vcr1images/`."""

    source = "vcr"
    version = "1.1"  # annotated boxes, dropped polygon parts and box-only tiny objects counted
    units = ("question", "object")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> VcrBuilder:
        return cls(args.root, args.images, args.splits)

    def source_files(self) -> list[Path]:
        return list(self.split_files(SPLIT_FILE).values())

    def index(self, tasks: Tasks = IN_PROCESS) -> SourceIndex:
        index = SourceIndex()
        for split, path in self.split_files(SPLIT_FILE).items():
            self._index_split(index, split, path)
        return index

    def _index_split(self, index: SourceIndex, split: str, path: Path) -> None:
        """Check one split's lines; keep the first of each `annot_id`, reject the rest."""
        parsed, bad = read_jsonl(path)
        for rejected in bad:
            index.reject(split, rejected)
        items: dict[str, WorkItem] = {}
        for number, line in parsed:
            problem = line_problem(line, split)
            if problem is None and line["annot_id"] in items:
                problem = "duplicate_question", f"annot_id {line['annot_id']!r} appears twice"
            if problem is not None:
                annot = line.get("annot_id") if isinstance(line, dict) else None
                key = f"question {annot}" if isinstance(annot, str) else f"line {number}"
                index.reject(
                    split,
                    Rejected(
                        key,
                        problem[0],
                        f"{path.name}: line {number}: {problem[1]}",
                        object_units(line),
                        line,
                        path.name,
                    ),
                )
                continue
            payload = {"line": line, "line_number": number, "file": path.name}
            items[line["annot_id"]] = WorkItem(split, line["annot_id"], payload, object_units(line))
        for key in sorted(items, key=natural_key):
            index.add(items[key])

    def build_item(self, item: WorkItem) -> Iterator[Built | Rejected]:
        line = item.payload["line"]
        try:
            metadata = self._metadata(line)
            path, (width, height) = self._image(line, metadata)
            regions, bad, adjustments = object_regions(metadata, width, height)
            check_mentions(line, bad)
        except RecordError as problem:
            yield self._rejected_question(item, problem)
            return
        for k, (code, message) in bad.items():
            yield self._rejected_object(item, metadata, k, code, message)
        positions = {k: position for position, k in enumerate(regions)}
        yield Built(
            self.make_row(
                item,
                image_path=str(path),
                width=width,
                height=height,
                image_keys=[f"vcr:{line['img_fn'].removesuffix('.jpg')}"],
                regions=list(regions.values()),
                messages=vcr_messages(line, positions),
                task="region_vqa",
                source_files=[item.payload["file"], line["metadata_fn"]],
            ),
            {"question": 1, "object": len(regions)},
            adjustments,
        )

    def _rejected_question(self, item: WorkItem, problem: RecordError) -> Rejected:
        """The whole line, with all its units, in quarantine."""
        file = item.payload["file"]
        where = f"line {item.payload['line_number']}, question {item.key}"
        if isinstance(problem, _MetadataError):
            where = f"metadata of {file} {where}"
            file = item.payload["line"]["metadata_fn"]
        return Rejected(
            f"question {item.key}",
            problem.code,
            f"{file}: {where}: {problem}",
            item.units,
            item.payload["line"],
            file,
        )

    def _rejected_object(
        self, item: WorkItem, metadata: dict[str, Any], k: int, code: str, message: str
    ) -> Rejected:
        """One object no text of the question mentions, in quarantine with its metadata entries."""
        file = item.payload["line"]["metadata_fn"]
        return Rejected(
            f"question {item.key} object {k}",
            code,
            f"{file}: object {k} (question {item.key}): {message}",
            {"object": 1},
            {
                "annot_id": item.key,
                "metadata_fn": file,
                "object": k,
                "box": metadata["boxes"][k],
                "segm": metadata["segms"][k],
                "name": metadata["names"][k],
            },
            file,
        )

    def _metadata(self, line: dict[str, Any]) -> dict[str, Any]:
        """The image's metadata json, checked against itself and the line's `objects`."""
        relative = line["metadata_fn"]
        try:
            path = resolve_image(self.images, relative)
        except ImagePathError as error:
            raise RecordError(error.code, f"field 'metadata_fn': {error}") from None
        if not path.is_file():
            raise RecordError(
                "missing_metadata", f"field 'metadata_fn': {relative!r} does not exist"
            )
        try:
            metadata = load_json(path)
        except BuilderInputError:
            raise _MetadataError("bad_metadata", "not valid JSON (truncated?)") from None
        problem = field_problem(metadata, REQUIRED_METADATA_FIELDS)
        if problem is not None:
            raise _MetadataError("bad_metadata", problem)
        lengths = {name: len(metadata[name]) for name in ("boxes", "segms", "names")}
        if len(set(lengths.values())) > 1:
            raise _MetadataError(
                "metadata_mismatch", f"fields {lengths} should have one entry per object"
            )
        if metadata["names"] != line["objects"]:
            raise RecordError(
                "objects_mismatch",
                f"field 'objects' {line['objects']} differs from the 'names' "
                f"{metadata['names']} of {relative}, so its indices may point at the wrong boxes",
            )
        return metadata

    def _image(
        self, line: dict[str, Any], metadata: dict[str, Any]
    ) -> tuple[Path, tuple[int, int]]:
        """The image's path and size, which must be the metadata's `width` and `height`."""
        try:
            return checked_image(
                self.images, line["img_fn"], (metadata["width"], metadata["height"])
            )
        except ImagePathError as error:
            raise RecordError(error.code, f"field 'img_fn': {error}") from None


def _box_problem(box: Any) -> str | None:
    if (
        not isinstance(box, list)
        or len(box) != 5
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)
    ):
        return f"field 'boxes': {box!r} is not [x1, y1, x2, y2, score]"
    if not all(math.isfinite(v) for v in box):
        return f"field 'boxes': {box!r} has a non-finite number"
    return None


def object_region(
    k: int, box: Any, segm: Any, name: str, width: int, height: int, adjustments: Counter[str]
) -> dict[str, Any] | tuple[str, str]:
    """Object `k` of a metadata file as a region, or why it cannot be one as (code, message)."""
    problem = _box_problem(box)
    if problem is not None:
        return "bad_box", problem
    bbox = clip_box(box[:4], width, height)
    if box_is_empty(bbox):
        return "bad_box", f"field 'boxes': {box[:4]} covers nothing of the {width}x{height} image"
    if not isinstance(segm, list):
        return "bad_segmentation", f"field 'segms': {type(segm).__name__} is not a polygon list"
    try:
        return boxed_region(
            str(k),
            bbox,
            segm,
            width,
            height,
            adjustments,
            box_field="boxes",
            mask_field="segms",
            category=name,
            score=box[4],
        )
    except RecordError as error:
        return error.code, str(error)


def object_regions(
    metadata: dict[str, Any], width: int, height: int
) -> tuple[dict[int, dict[str, Any]], dict[int, tuple[str, str]], Counter[str]]:
    """Every metadata object as a region by its index, the unusable ones as (code, message), and
    the repairs made to the usable ones."""
    regions: dict[int, dict[str, Any]] = {}
    bad: dict[int, tuple[str, str]] = {}
    adjustments: Counter[str] = Counter()
    objects = zip(metadata["boxes"], metadata["segms"], metadata["names"], strict=True)
    for k, (box, segm, name) in enumerate(objects):
        repairs: Counter[str] = Counter()
        region = object_region(k, box, segm, name, width, height, repairs)
        if isinstance(region, tuple):
            bad[k] = region
        else:
            regions[k] = region
            adjustments += repairs
    return regions, bad, adjustments


def check_mentions(line: dict[str, Any], bad: dict[int, tuple[str, str]]) -> None:
    """Refuse a line whose texts mention an unusable object: its markup would point at nothing."""
    mentioned = sorted(referenced_objects(line) & bad.keys())
    if mentioned:
        why = "; ".join(f"object {k}: {bad[k][1]}" for k in mentioned)
        raise _MetadataError(bad[mentioned[0]][0], f"mentions unusable objects ({why})")
