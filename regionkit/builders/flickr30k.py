"""Flickr30k Entities: one row per image of a split, its boxes, five captions and their phrases.

The source is one folder as `annotations.zip` unpacks, plus the Flickr30k image folder:

- `{split}.txt` (train, val, test): one image id per line. Ids are Flickr photo ids of varying
  length (`36979`, `1000092795`), so items are ordered numerically. A line that is not a plain
  number (e.g. `../x`) is refused before any path is built from it.
- `Sentences/<id>.txt`: one caption per line, phrases marked `[/EN#<chain>/<type>[/<type>...]
  <words>]`. Lines may lack the trailing ` .`, a file may end with an empty line (skipped, not a
  caption), a phrase may carry several types (`/bodyparts/people`), one chain may carry different
  types in different sentences, and `EN#0/notvisual` recurs: chain 0 is "not in the image".
- `Annotations/<id>.xml` (Pascal-VOC-like): `<size>` and `<object>`s. An object names one or more
  chains (`<name>1</name><name>6</name>`: one box shared by chains 1 and 6) and either has a
  `<bndbox>` with 1-based inclusive integer corners, or no box and the `<scene>`/`<nobndbox>` flags.
- `UNRELATED_CAPTIONS` (optional): `<image id> <sentence number>` lines (1-based, after a `#`
  header) naming captions the annotators found unrelated to their image.

Mapping. Every object with a `<bndbox>` is one region (id = its 0-based position among the file's
objects, box `[xmin - 1, ymin - 1, xmax, ymax]` clipped to the image, no mask); its category is
the sorted, `/`-joined union of the phrase types its chains carry in the image's captions, e.g.
`other/people`. Captions are the sentences without markup, tokens joined by single spaces as the
official `get_sentence_data` does (`... the yard .`). Each phrase of a chain that has boxes is a
grounding whose regions are all that chain's boxes; phrases of chain 0, of scene/no-box chains and
of chains absent from the XML stay in their caption and give no grounding. Objects without a box
are counted as `nobox` units and leave with their row: the record has no place for a box-less
entity. image_keys are `flickr30k:<id>` and `flickr:<id>`, the Flickr photo id that Visual
Genome's `flickr_id` also holds.

Units: `image`, `caption` (non-empty sentence lines), `box` and `nobox` (objects with and without a
`<bndbox>`; those inside an unparsable XML cannot be counted). Quarantine codes: index stage
`bad_image_id`, `duplicate_image`, `missing_sentences`, `missing_annotation`, `malformed_xml`,
`unsafe_xml`, `bad_size` (the whole image with what its files hold); build stage `missing_image`,
`unreadable_image`, `image_size_mismatch` (the whole image), `bad_markup` and `unrelated_caption`
(one caption), `malformed_box`, `empty_box`, `missing_name`, `bad_name` (one box) and
`malformed_object` (one box-less object).

XML safety: the files are parsed with the standard library's ElementTree (expat), which never
fetches external entities or DTDs. Entity expansion is the remaining risk, so a file that declares
a DOCTYPE or ENTITY (the real files never do) is refused as expat meets the declaration, in any
encoding; each file is one image's few kilobytes, read whole.
"""

from __future__ import annotations

import argparse
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.parsers import expat

from regionkit.builders.base import BuilderInputError, Built, Rejected, SourceIndex, WorkItem
from regionkit.builders.fields import RecordError
from regionkit.builders.files import ImagePathError, checked_image, decode_text
from regionkit.builders.rooted import RootedBuilder
from regionkit.builders.tasks import IN_PROCESS, Tasks
from regionkit.catalog.boxes import box_is_empty, clip_box
from regionkit.catalog.records import make_region

PLAIN_ID = re.compile(r"[0-9]{1,18}")
"""Image and chain ids: ASCII digits only (`\\d` would also take other scripts' digits), and at
most 18 of them (`int()` refuses numbers past 4,300 digits; no id is that long)."""
INTEGER = re.compile(r"-?[0-9]{1,18}")
PHRASE = re.compile(r"\[/EN#([0-9]{1,18})((?:/[^\s/\[\]]+)+) ([^\[\]]*)\]")
"""`[/EN#<chain>/<type>[/<type>...] <words>]`; words hold no brackets (nesting never occurs)."""
NOT_VISUAL_CHAIN = "0"
COORDINATES = ("xmin", "ymin", "xmax", "ymax")
UNRELATED_FILE = "UNRELATED_CAPTIONS"
SPLIT_FILE = "{split}.txt"


@dataclass(frozen=True)
class Phrase:
    """One marked phrase: its chain id (normalised, `0` = not visual), types and words."""

    chain: str
    types: tuple[str, ...]
    text: str


def parse_sentence(line: str) -> tuple[str, list[Phrase]]:
    """A sentence line -> (caption without markup, its phrases), or `RecordError` if unbalanced.

    Every `[` must open a well-formed phrase and every `]` must close one: a bracket left over
    once the phrases are taken out means the line's markup cannot be trusted.
    """
    pieces: list[str] = []
    phrases: list[Phrase] = []
    position = 0
    for match in PHRASE.finditer(line):
        _check_plain(line, position, match.start())
        words = match.group(3).split()
        if not words:
            raise RecordError(
                "bad_markup",
                f"field 'markup': the phrase at column {match.start() + 1} has no words",
            )
        chain = str(int(match.group(1)))
        phrases.append(Phrase(chain, tuple(match.group(2).split("/")[1:]), " ".join(words)))
        pieces += [line[position : match.start()], " ".join(words)]
        position = match.end()
    _check_plain(line, position, len(line))
    pieces.append(line[position:])
    return " ".join("".join(pieces).split()), phrases


def _check_plain(line: str, start: int, stop: int) -> None:
    """Raise `RecordError` if text between phrases holds a bracket (a broken phrase)."""
    for column in range(start, stop):
        if line[column] == "[":
            raise RecordError(
                "bad_markup",
                f"field 'markup': '[' at column {column + 1} opens no well-formed "
                f"[/EN#<chain>/<type> <words>] phrase: {line[column : column + 40]!r}",
            )
        if line[column] == "]":
            raise RecordError(
                "bad_markup", f"field 'markup': ']' at column {column + 1} closes no phrase"
            )


def _split_lines(path: Path) -> list[str]:
    """The lines of a split file, or `BuilderInputError` when it is not a text file at all."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BuilderInputError(
            f"{path}: not a text file of image ids (byte {error.start} is not UTF-8); "
            "the file may be damaged, download it again"
        ) from None
    if "\0" in text:
        raise BuilderInputError(f"{path}: holds NUL bytes, not a text file of image ids")
    return text.split("\n")


def read_sentences(path: Path) -> list[dict[str, Any]]:
    """The non-empty lines of a Sentences file as `{line (1-based), text}`, ends stripped."""
    lines = decode_text(path.read_bytes()).split("\n")
    return [
        {"line": number, "text": text.strip()}
        for number, text in enumerate(lines, start=1)
        if text.strip()
    ]


class _DeclaresDtd(Exception):
    """Raised from inside expat when a document declares a DOCTYPE or an entity."""


def _refuse_dtd(*_: object) -> None:
    raise _DeclaresDtd


def _declares_dtd(data: bytes) -> bool:
    """Whether the XML declares a DOCTYPE or an entity, in whatever encoding it is written.

    expat reports declarations as it meets them, so the refusal comes before any entity could be
    expanded; a byte search would miss a UTF-16 document.
    """
    parser = expat.ParserCreate()
    parser.StartDoctypeDeclHandler = _refuse_dtd
    parser.EntityDeclHandler = _refuse_dtd
    try:
        parser.Parse(data, True)
    except _DeclaresDtd:
        return True
    except (expat.ExpatError, LookupError):  # LookupError: an unknown encoding
        return False  # malformed: ElementTree names the problem next
    return False


def parse_annotation(path: Path, file: str) -> ElementTree.Element:
    """The XML root of an Annotations file, or `RecordError` naming the file and what is wrong."""
    data = path.read_bytes()
    if _declares_dtd(data):
        raise RecordError(
            "unsafe_xml",
            f"{file}: declares a DOCTYPE or ENTITY, which Flickr30k files never do; refused so "
            "no entity can expand",
        )
    try:
        root = ElementTree.fromstring(data)
    except (ElementTree.ParseError, LookupError) as error:  # LookupError: unknown encoding
        raise RecordError(
            "malformed_xml", f"{file}: not well-formed XML ({error}); the file may be truncated"
        ) from None
    if root.tag != "annotation":
        raise RecordError(
            "malformed_xml", f"{file}: root element is <{root.tag}>, not <annotation>"
        )
    return root


def object_records(root: ElementTree.Element) -> list[dict[str, Any]]:
    """Each `<object>` as plain data, texts as written: names, bndbox corners, scene, nobndbox."""
    records = []
    for element in root.findall("object"):
        box = element.find("bndbox")
        records.append(
            {
                "names": [(name.text or "").strip() for name in element.findall("name")],
                "bndbox": None
                if box is None
                else {
                    tag: text.strip()
                    for tag in COORDINATES
                    if (text := box.findtext(tag)) is not None
                },
                "scene": _stripped(element.findtext("scene")),
                "nobndbox": _stripped(element.findtext("nobndbox")),
            }
        )
    return records


def _stripped(text: str | None) -> str | None:
    return None if text is None else text.strip()


def annotated_size(root: ElementTree.Element, file: str) -> tuple[int, int]:
    """(width, height) from `<size>`, or `RecordError` naming the missing or bad field."""
    size = []
    for tag in ("width", "height"):
        text = root.findtext(f"size/{tag}")
        if text is None:
            raise RecordError("bad_size", f"{file}: field 'size/{tag}' is missing")
        if not PLAIN_ID.fullmatch(text.strip()) or int(text) == 0:
            raise RecordError(
                "bad_size", f"{file}: field 'size/{tag}' {text!r} is not a positive int"
            )
        size.append(int(text))
    return size[0], size[1]


def chain_ids(record: dict[str, Any]) -> list[str]:
    """An object's chain ids, normalised; `RecordError` when it has none or a non-number."""
    names = record["names"]
    if not names:
        raise RecordError("missing_name", "field 'name' is missing: the object belongs to no chain")
    bad = [name for name in names if not PLAIN_ID.fullmatch(name)]
    if bad:
        raise RecordError("bad_name", f"field 'name': {bad[0]!r} is not a chain id (a number)")
    return [str(int(name)) for name in names]


def box_xyxy(record: dict[str, Any], width: int, height: int) -> list[float]:
    """The object's 1-based inclusive corners as a 0-based continuous xyxy box, clipped."""
    corners = []
    for tag in COORDINATES:
        text = record["bndbox"].get(tag)
        if text is None:
            raise RecordError("malformed_box", f"field 'bndbox/{tag}' is missing")
        if not INTEGER.fullmatch(text):
            raise RecordError("malformed_box", f"field 'bndbox/{tag}' {text!r} is not an integer")
        corners.append(int(text))
    xmin, ymin, xmax, ymax = corners
    box = clip_box([xmin - 1, ymin - 1, xmax, ymax], width, height)
    if box_is_empty(box):
        raise RecordError(
            "empty_box",
            f"field 'bndbox': {corners} (1-based inclusive) covers no pixel of the "
            f"{width}x{height} image",
        )
    return box


def check_flags(record: dict[str, Any]) -> None:
    """A box-less object must say what it is with `<scene>` and `<nobndbox>` set to 0 or 1."""
    for tag in ("scene", "nobndbox"):
        if record[tag] not in ("0", "1"):
            found = "is missing" if record[tag] is None else f"{record[tag]!r} is not 0 or 1"
            raise RecordError("malformed_object", f"no 'bndbox', and field {tag!r} {found}")


def object_units(objects: list[dict[str, Any]] | None) -> dict[str, int]:
    """How many box and box-less objects a file holds (none when it could not be read)."""
    boxes = sum(o["bndbox"] is not None for o in objects or [])
    return {"box": boxes, "nobox": len(objects or []) - boxes}


@dataclass
class _Grounded:
    """What an image's objects and captions became: the row's parts and the box-less count."""

    regions: list[dict[str, Any]]
    groundings: list[dict[str, Any]]
    boxless: int


def ground(
    boxes: list[tuple[str, list[str], list[float]]], boxless: int, phrases: list[Phrase]
) -> _Grounded:
    """Regions from (id, chains, box) and the groundings of `phrases` over them.

    A region's category is the sorted, `/`-joined set of types its chains' phrases carry; a
    phrase grounds to every region of its chain, unless the chain is 0 or has no box.
    """
    regions: list[dict[str, Any]] = []
    chain_regions: dict[str, list[int]] = {}
    for index, (region_id, chains, box) in enumerate(boxes):
        types = {t for p in phrases if p.chain in chains for t in p.types}
        regions.append(make_region(region_id, box, category="/".join(sorted(types)) or None))
        for chain in chains:
            chain_regions.setdefault(chain, []).append(index)
    groundings = [
        {"text": p.text, "regions": chain_regions[p.chain]}
        for p in phrases
        if p.chain != NOT_VISUAL_CHAIN and p.chain in chain_regions
    ]
    return _Grounded(regions, groundings, boxless)


class Flickr30kBuilder(RootedBuilder):
    """`regionkit build flickr30k --root flickr30k_entities/ --images flickr30k-images/`."""

    source = "flickr30k"
    version = "1.0"
    units = ("image", "caption", "box", "nobox")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Flickr30kBuilder:
        return cls(args.root, args.images, args.splits)

    def source_files(self) -> list[Path]:
        """The split files read and UNRELATED_CAPTIONS when present.

        The per-image Sentences and Annotations files (63,566 in the full set) are not listed:
        hashing them into the manifest would make it megabytes long.
        """
        found = self.present_split_files(SPLIT_FILE)
        files = [path for split, path in found.items() if self.wants_split(split)]
        unrelated = self.root / UNRELATED_FILE
        return [*files, unrelated] if unrelated.is_file() else files

    def _require_folder(self, name: str) -> None:
        """Fail clearly when a whole folder of the source is absent (nothing could be built)."""
        path = self.root / name
        if not path.is_dir():
            raise BuilderInputError(
                f"{path}: folder not found. Catalog source {self.source!r} needs {name}/ "
                f"under --root; see `regionkit sources {self.source}` for how to get it."
            )

    def index(self, tasks: Tasks = IN_PROCESS) -> SourceIndex:
        found = self.present_split_files(SPLIT_FILE)
        if not found:
            self.expected_file(SPLIT_FILE, split=self.catalog.splits[0])
        self.check_splits_found(found)
        self._require_folder("Sentences")
        self._require_folder("Annotations")
        unrelated = self._read_unrelated()
        index = SourceIndex()
        for split in (s for s in found if self.wants_split(s)):
            for image_id in self._split_ids(split, index):
                outcome = self._index_image(split, image_id, unrelated.get(image_id, []))
                if isinstance(outcome, Rejected):
                    index.reject(split, outcome)
                else:
                    index.add(outcome)
        return index

    def _split_ids(self, split: str, index: SourceIndex) -> list[str]:
        """The split's plain, distinct image ids in numeric order; other lines are rejected."""
        path = self.expected_file(SPLIT_FILE, split=split)
        ids: set[str] = set()
        for number, line in enumerate(_split_lines(path), start=1):
            image_id = line.strip()
            if not image_id:
                continue
            if PLAIN_ID.fullmatch(image_id) and image_id not in ids:
                ids.add(image_id)
                continue
            code, problem = (
                ("duplicate_image", f"image id {image_id} is listed twice")
                if image_id in ids
                else ("bad_image_id", f"{image_id!r} is not a plain image id")
            )
            index.reject(
                split,
                Rejected(
                    f"image {image_id!r} ({path.name} line {number})",
                    code,
                    f"{path.name}: line {number}: {problem}",
                    {"image": 1},
                    line,
                    path.name,
                ),
            )
        return sorted(ids, key=lambda i: (int(i), i))

    def _read_unrelated(self) -> dict[str, list[int]]:
        """Sentence numbers (1-based) per image id from the optional UNRELATED_CAPTIONS file."""
        path = self.root / UNRELATED_FILE
        if not path.is_file():
            return {}
        unrelated: dict[str, list[int]] = {}
        for number, line in enumerate(decode_text(path.read_bytes()).split("\n"), start=1):
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            if len(fields) != 2 or not all(PLAIN_ID.fullmatch(f) for f in fields):
                raise BuilderInputError(
                    f"{path}: line {number}: {line.strip()!r} is not '<image id> <sentence number>'"
                )
            unrelated.setdefault(fields[0], []).append(int(fields[1]))
        return unrelated

    def _index_image(self, split: str, image_id: str, unrelated: list[int]) -> WorkItem | Rejected:
        """Read one image's two files into a work item, or reject the image with all they hold."""
        record: dict[str, Any] = {"image_id": image_id, "sentences": None, "objects": None}
        problems = self._read_sentences(image_id, record) + self._read_annotation(image_id, record)
        units = {
            "image": 1,
            "caption": len(record["sentences"] or []),
            **object_units(record["objects"]),
        }
        if problems:
            return Rejected(
                f"image {image_id}",
                problems[0].code,
                f"image {image_id} in {split}.txt: " + "; ".join(str(p) for p in problems),
                units,
                record,
                f"Sentences/{image_id}.txt"
                if problems[0].code == "missing_sentences"
                else f"Annotations/{image_id}.xml",
            )
        return WorkItem(split, image_id, {**record, "unrelated": unrelated}, units)

    def _read_sentences(self, image_id: str, record: dict[str, Any]) -> list[RecordError]:
        """Put the image's sentence lines into `record`; the problem if the file is missing."""
        file = f"Sentences/{image_id}.txt"
        if not (self.root / file).is_file():
            return [RecordError("missing_sentences", f"{file}: file not found")]
        record["sentences"] = read_sentences(self.root / file)
        return []

    def _read_annotation(self, image_id: str, record: dict[str, Any]) -> list[RecordError]:
        """Put the image's objects and size into `record`; the problem if the XML is unusable.

        An unparsable file's text goes into `record` instead, so the quarantine keeps it.
        """
        file = f"Annotations/{image_id}.xml"
        if not (self.root / file).is_file():
            return [RecordError("missing_annotation", f"{file}: file not found")]
        try:
            root = parse_annotation(self.root / file, file)
        except RecordError as problem:
            record["xml"] = decode_text((self.root / file).read_bytes())
            return [problem]
        record["objects"] = object_records(root)
        try:
            record["width"], record["height"] = annotated_size(root, file)
        except RecordError as problem:
            return [problem]
        return []

    def build_item(self, item: WorkItem) -> Iterator[Built | Rejected]:
        payload = item.payload
        image_id, width, height = payload["image_id"], payload["width"], payload["height"]
        xml_file = f"Annotations/{image_id}.xml"
        try:
            path, _ = checked_image(self.images, f"{image_id}.jpg", (width, height))
        except ImagePathError as error:
            yield Rejected(
                f"image {image_id}",
                error.code,
                f"{xml_file}: image {image_id} ({image_id}.jpg): {error}",
                item.units,
                {k: v for k, v in payload.items() if k != "unrelated"},
                xml_file,
            )
            return
        captions: list[str] = []
        phrases: list[Phrase] = []
        boxes: list[tuple[str, list[str], list[float]]] = []
        boxless = 0
        for outcome in self._captions(image_id, payload["sentences"], payload["unrelated"]):
            if isinstance(outcome, Rejected):
                yield outcome
            else:
                captions.append(outcome[0])
                phrases += outcome[1]
        for position, record in enumerate(payload["objects"]):
            outcome = self._object(image_id, position, record, width, height)
            if isinstance(outcome, Rejected):
                yield outcome
            elif outcome is None:
                boxless += 1
            else:
                boxes.append((str(position), *outcome))
        yield self._row(item, str(path), captions, ground(boxes, boxless, phrases))

    def _row(
        self, item: WorkItem, image_path: str, captions: list[str], grounded: _Grounded
    ) -> Built:
        """The image's row and the units it carries out (box-less objects leave with it)."""
        image_id = item.key
        return Built(
            self.make_row(
                item,
                image_path=image_path,
                width=item.payload["width"],
                height=item.payload["height"],
                image_keys=[f"flickr30k:{image_id}", f"flickr:{image_id}"],
                regions=grounded.regions,
                groundings=grounded.groundings,
                captions=captions,
                source_files=[
                    f"{item.split}.txt",
                    f"Sentences/{image_id}.txt",
                    f"Annotations/{image_id}.xml",
                ],
            ),
            {
                "image": 1,
                "caption": len(captions),
                "box": len(grounded.regions),
                "nobox": grounded.boxless,
            },
        )

    def _captions(
        self, image_id: str, sentences: list[dict[str, Any]], unrelated: list[int]
    ) -> Iterator[tuple[str, list[Phrase]] | Rejected]:
        """Each sentence as (caption, phrases), or rejected: unbalanced markup, or unrelated."""
        file = f"Sentences/{image_id}.txt"
        for number, sentence in enumerate(sentences, start=1):
            try:
                if number in unrelated:
                    raise RecordError(
                        "unrelated_caption",
                        f"sentence {number} is listed in {UNRELATED_FILE} as not about the image",
                    )
                yield parse_sentence(sentence["text"])
            except RecordError as problem:
                yield Rejected(
                    f"caption {image_id}/{sentence['line']}",
                    problem.code,
                    f"{file}: line {sentence['line']}: {problem}",
                    {"caption": 1},
                    {"image_id": image_id, **sentence},
                    file,
                )

    def _object(
        self, image_id: str, position: int, record: dict[str, Any], width: int, height: int
    ) -> tuple[list[str], list[float]] | Rejected | None:
        """An object's (chains, box); None for a sound box-less object; else its rejection."""
        file = f"Annotations/{image_id}.xml"
        has_box = record["bndbox"] is not None
        try:
            chains = chain_ids(record)
            if not has_box:
                check_flags(record)
                return None
            return chains, box_xyxy(record, width, height)
        except RecordError as problem:
            named = ", ".join(record["names"]) or "none"
            return Rejected(
                f"object {image_id}/{position}",
                problem.code,
                f"{file}: object[{position}] (chains {named}): {problem}",
                {"box" if has_box else "nobox": 1},
                {"image_id": image_id, "position": position, **record},
                file,
            )
