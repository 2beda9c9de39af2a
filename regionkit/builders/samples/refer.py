"""The refer layout (RefCOCO, RefCOCO+, RefCOCOg, RefCLEF) as lichengunc/refer ships it.

Writes `<dataset>/instances.json` and `<dataset>/refs(<split_by>).p` beside an image folder
laid out as refer's `data/images/`, with the real files' quirks:

- `refs(<split_by>).p` is a Python 2 pickle of plain data: strings are Python 2 byte strings
  (SHORT_BINSTRING/BINSTRING, or STRING in protocol 0), repeated strings are memo references
  (as Python 2 interned strings are), ints BININT1/BININT2/BININT (ids like 1719310 need
  BININT), anything beyond 32 bits LONG1 as a Python 2 long. Python 3's `pickle.dump` cannot
  write this (it writes text as unicode and bytes through a global), so a small opcode writer
  does. One raw sentence is UTF-8 non-ASCII, one is latin-1 bytes.
- a ref's `file_name` carries an `_N` suffix that names no file; the image file is
  `images[image_id].file_name` in instances.json.
- refs hold no box: `ann_id` joins to instances.json, whose stored `bbox` and `area` disagree
  with the rasterised mask; some polygons have two parts; category ids have gaps.
- instances.json also holds annotations no ref refers to (refer ships every COCO annotation of
  its images); two refs of one image may refer to the same annotation; one image has refs in
  two splits; splits include `testA` and `testB` (and `testAB` for RefCLEF).
- RefCLEF: SAIAPR TC-12 images as refer's subset unpacks them, bare `<id>.jpg` files in
  `saiapr_tc-12/` (REFER joins `IMAGE_DIR = images/saiapr_tc-12` with `images[].file_name`;
  CRIS.pytorch's `tools/data_process.py` matches file names like `19579.jpg`). A mask is a
  *list* of compressed RLE dicts, `[{size, counts}]`: refer's `getMask` tests
  `type(ann['segmentation'][0]) == list` for polygons, else decodes the segmentation and sums
  over the parts axis, which only works on a list. The first object of every odd image is a
  single dict, as converted copies hold.
- Polygon parts: now and then a 2-point leftover part beside the object's real one (cocoapi's
  `annToRLE` merges it and it adds no pixel).

`draw=False` writes one JPEG per distinct image size and hard-links the rest, so a RefCOCO-scale
sample (20,000 images, 50,000 refs, 142,000 sentences) writes in seconds.
"""

from __future__ import annotations

import io
import math
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from PIL import Image, ImageDraw
from pycocotools import mask as mask_api

from regionkit.builders.safe_pickle import PlainUnpickler, loads_plain
from regionkit.builders.samples.coco import CATEGORIES as COCO_CATEGORIES
from regionkit.builders.samples.images import ImageWriter
from regionkit.builders.samples.shapes import (
    extent_xywh,
    shoelace_area,
    sliver_part,
    star_polygon,
)

REFCLEF_CATEGORIES = [
    {"supercategory": "humans", "id": 1, "name": "man"},
    {"supercategory": "landscape", "id": 4, "name": "sky"},
    {"supercategory": "vehicles", "id": 9, "name": "car"},
    {"supercategory": "construction", "id": 17, "name": "building"},
    {"supercategory": "plants", "id": 23, "name": "tree"},
]


@dataclass(frozen=True)
class ReferLayout:
    """What differs between the refer datasets' files."""

    split_by: str
    splits: tuple[str, ...]
    saiapr: bool = False


LAYOUTS = {
    "refcoco": ReferLayout("unc", ("train", "val", "testA", "testB")),
    "refcoco+": ReferLayout("unc", ("train", "val", "testA", "testB")),
    "refcocog": ReferLayout("umd", ("train", "val", "test")),
    "refclef": ReferLayout("unc", ("train", "val", "testA", "testB", "testAB"), saiapr=True),
}

ADJECTIVES = ["red", "small", "left", "big", "striped", "dark", "white", "far"]
PLACES = ["on the left", "in front", "near the middle", "at the back", "on the right", "closest"]
UTF8_SENTENCE = ("the café {name}", "The Café {name}!")
LATIN1_RAW = b"the caf\xe9 "


@dataclass(frozen=True)
class ReferSample:
    """Where a written refer sample lives.

    Attributes:
        root: the dataset folder holding instances.json and refs(<split_by>).p (`--root`).
        images: the image root (`--images`).
        dataset: refcoco, refcoco+, refcocog or refclef.
        split_by: the split scheme in the refs file's name.
        protocol: the pickle protocol the refs file was written with (0 or 2).
    """

    root: Path
    images: Path
    dataset: str
    split_by: str
    protocol: int

    @property
    def refs(self) -> Path:
        return self.root / f"refs({self.split_by}).p"

    @property
    def instances(self) -> Path:
        return self.root / "instances.json"


def py2_pickle(value: Any, protocol: int = 2) -> bytes:
    """`value` (plain data) pickled as Python 2's `pickle.dump` writes it.

    `str` is written as a Python 2 byte string holding its UTF-8 bytes and `bytes` as a byte
    string holding exactly those bytes (how a latin-1 file read by Python 2 ends up pickled).
    """
    if protocol not in (0, 2):
        raise ValueError(f"protocol {protocol} is not one Python 2 wrote for these files")
    writer = _Py2Pickler(protocol)
    writer.save(value)
    return writer.finish()


class _Py2Pickler:
    """Opcode-level writer of Python 2 pickles of lists, dicts, strings, numbers, None."""

    BATCH = 1000  # Python 2 pickle's _BATCHSIZE for APPENDS/SETITEMS

    def __init__(self, protocol: int) -> None:
        self.binary = protocol >= 1
        self.out = bytearray(b"\x80\x02" if protocol == 2 else b"")
        self.strings: dict[bytes, int] = {}
        self.memo_size = 0

    def finish(self) -> bytes:
        self.out += b"."
        return bytes(self.out)

    def save(self, value: Any) -> None:
        kind = type(value)
        if kind is str or kind is bytes:
            self._string(value.encode("utf-8") if kind is str else value)
        elif kind is bool:
            self._bool(value)
        elif kind is int:
            self._int(value)
        elif kind is float:
            self.out += b"G" + struct.pack(">d", value) if self.binary else b"F%r\n" % value
        elif value is None:
            self.out += b"N"
        elif kind is list:
            self._list(value)
        elif kind is dict:
            self._dict(value)
        else:
            raise TypeError(f"cannot write {kind.__name__} as Python 2 plain data")

    def _memoize(self) -> int:
        index = self.memo_size
        self.memo_size += 1
        if not self.binary:
            self.out += b"p%d\n" % index
        elif index < 256:
            self.out += b"q" + bytes([index])
        else:
            self.out += b"r" + struct.pack("<I", index)
        return index

    def _string(self, data: bytes) -> None:
        index = self.strings.get(data)
        if index is not None:  # an interned string seen before: a memo reference
            if not self.binary:
                self.out += b"g%d\n" % index
            elif index < 256:
                self.out += b"h" + bytes([index])
            else:
                self.out += b"j" + struct.pack("<I", index)
            return
        if not self.binary:
            self.out += b"S" + repr(data)[1:].encode("ascii") + b"\n"
        elif len(data) < 256:
            self.out += b"U" + bytes([len(data)]) + data
        else:
            self.out += b"T" + struct.pack("<i", len(data)) + data
        self.strings[data] = self._memoize()

    def _bool(self, value: bool) -> None:
        if self.binary:
            self.out += b"\x88" if value else b"\x89"
        else:
            self.out += b"I01\n" if value else b"I00\n"

    def _int(self, value: int) -> None:
        if not -(2**31) <= value < 2**31:  # a Python 2 long
            if self.binary:
                data = value.to_bytes(value.bit_length() // 8 + 1, "little", signed=True)
                self.out += b"\x8a" + bytes([len(data)]) + data
            else:
                self.out += b"L%dL\n" % value
        elif not self.binary:
            self.out += b"I%d\n" % value
        elif 0 <= value < 256:
            self.out += b"K" + bytes([value])
        elif 0 <= value < 65536:
            self.out += b"M" + struct.pack("<H", value)
        else:
            self.out += b"J" + struct.pack("<i", value)

    def _list(self, items: list[Any]) -> None:
        self.out += b"]" if self.binary else b"(l"
        self._memoize()
        self._fill(items, self.save, single=b"a", batch=b"e")

    def _dict(self, mapping: dict[Any, Any]) -> None:
        self.out += b"}" if self.binary else b"(d"
        self._memoize()
        self._fill(list(mapping.items()), self._pair, single=b"s", batch=b"u")

    def _pair(self, pair: tuple[Any, Any]) -> None:
        self.save(pair[0])
        self.save(pair[1])

    def _fill(
        self, entries: list[Any], save: Callable[[Any], None], single: bytes, batch: bytes
    ) -> None:
        """Entries as Python 2 adds them: an APPEND/SETITEM each in protocol 0, MARK-ed
        APPENDS/SETITEMS batches of 1000 in binary protocols (a lone entry gets the single op)."""
        if not self.binary:
            for entry in entries:
                save(entry)
                self.out += single
            return
        for start in range(0, len(entries), self.BATCH):
            chunk = entries[start : start + self.BATCH]
            if len(chunk) > 1:
                self.out += b"("
            for entry in chunk:
                save(entry)
            self.out += batch if len(chunk) > 1 else single


def spread(total_rate: float, n: int) -> int:
    """How many of a `total_rate`-per-unit quantity fall on unit `n`, spreading fractions evenly."""
    return math.floor((n + 1) * total_rate) - math.floor(n * total_rate)


def _image_record(
    image_id: int, file_name: str, width: int, height: int, saiapr: bool
) -> dict[str, Any]:
    record = {"license": 1, "file_name": file_name, "height": height, "width": width}
    if not saiapr:
        record["coco_url"] = f"http://mscoco.org/images/{image_id}"
        record["date_captured"] = "2013-11-21 23:06:41"
    return {**record, "id": image_id}


def _image_names(dataset: str, image_id: int) -> tuple[str, str]:
    """(instances file_name, the refs' file_name stem that gets the `_N` suffix)."""
    if LAYOUTS[dataset].saiapr:
        return f"{image_id}.jpg", f"{image_id}"
    name = f"COCO_train2014_{image_id:012d}"
    return f"{name}.jpg", name


def _rle(
    parts: list[list[float]], width: int, height: int, single: bool
) -> list[dict[str, Any]] | dict[str, Any]:
    """RefCLEF's mask form: a list of compressed RLE dicts, one per part (refer's `getMask`
    sums them), or, `single`, one dict of the whole mask as converted copies hold it."""
    rles = mask_api.frPyObjects(parts, height, width)
    if single:
        rles = [mask_api.merge(rles)]
    compressed = [{"size": [height, width], "counts": r["counts"].decode("ascii")} for r in rles]
    return compressed[0] if single else compressed


def _sentence(rng: random.Random, sent_id: int, category: str) -> dict[str, Any]:
    if sent_id == 0:
        sent, raw = (t.format(name=category) for t in UTF8_SENTENCE)
    else:
        sent = f"{rng.choice(ADJECTIVES)} {category} {rng.choice(PLACES)}"
        raw = LATIN1_RAW + category.encode() if sent_id == 1 else sent.upper()
    return {"tokens": sent.split(), "raw": raw, "sent_id": sent_id, "sent": sent}


def write_refer_sample(
    root: Path,
    *,
    dataset: str = "refcoco",
    split_by: str | None = None,
    num_images: int = 8,
    refs_per_image: float = 2.0,
    sentences_per_ref: float = 2.0,
    size: tuple[int, int] = (320, 240),
    splits: tuple[str, ...] | None = None,
    protocol: int = 2,
    draw: bool = True,
    seed: int = 0,
) -> ReferSample:
    """Write a refer-layout sample under `root` (`images/` and `<dataset>/`).

    Args:
        root: folder to write into.
        dataset: refcoco, refcoco+, refcocog or refclef (RefCLEF: SAIAPR images, RLE masks).
        split_by: the split scheme in `refs(<split_by>).p` (default: the dataset's usual one).
        num_images: images to write.
        refs_per_image: refs per image on average (fractions spread evenly; images get >= 1).
        sentences_per_ref: sentences per ref on average (fractions spread evenly, >= 1 each).
        size: (width, height); odd images are transposed to vary aspect.
        splits: split names, cycled over images (default: the dataset's).
        protocol: pickle protocol of the refs file, 2 (binary) or 0 (text), as Python 2 wrote.
        draw: draw the objects into the images; False writes flat images, linked (fast).
        seed: everything is a function of it.
    """
    layout = LAYOUTS[dataset]
    splits = splits or layout.splits
    rng = random.Random(seed)
    categories = REFCLEF_CATEGORIES if layout.saiapr else COCO_CATEGORIES
    image_dir = root / "images" / ("saiapr_tc-12" if layout.saiapr else "mscoco/images/train2014")
    writer = ImageWriter(draw)
    images, annotations, refs = [], [], []
    ann_id, sent_id = 1719310, 0  # ids as large as real ones, which need BININT
    for n in range(num_images):
        image_id = (25 if layout.saiapr else 100) + 13 * n
        width, height = size if n % 2 == 0 else (size[1], size[0])
        file_name, stem = _image_names(dataset, image_id)
        canvas = writer.canvas((width, height))
        num_refs = max(1, spread(refs_per_image, n))
        objects = []
        for k in range(num_refs + 1):  # one more than referred: refer ships every annotation
            single = k == 0 and n % 2 == 1
            ann, parts = _object(rng, ann_id + k, image_id, (width, height), categories)
            if layout.saiapr:
                ann["segmentation"] = _rle(parts, width, height, single)
            if canvas is not None:
                for part in parts:
                    ImageDraw.Draw(canvas).polygon(part, fill=(60 + 40 * k % 200, 90, 160))
            objects.append(ann)
        annotations += objects
        ann_id += len(objects)
        for k in range(num_refs):
            target = objects[0] if n % 7 == 3 and k == 1 else objects[k]  # 2 refs, 1 object
            split = splits[n % len(splits)]
            if n % 6 == 5 and k == num_refs - 1 and num_refs > 1:  # one image, two splits
                split = splits[(n + 1) % len(splits)]
            count = max(1, spread(sentences_per_ref, len(refs)))
            name = next(c["name"] for c in categories if c["id"] == target["category_id"])
            sentences = [_sentence(rng, sent_id + s, name) for s in range(count)]
            sent_id += count
            refs.append(
                {
                    "sent_ids": [s["sent_id"] for s in sentences],
                    "file_name": f"{stem}_{k + 1}.jpg",
                    "ann_id": target["id"],
                    "ref_id": len(refs),
                    "image_id": image_id,
                    "split": split,
                    "sentences": sentences,
                    "category_id": target["category_id"],
                }
            )
        writer.write(image_dir / file_name, (width, height), canvas)
        images.append(_image_record(image_id, file_name, width, height, layout.saiapr))
    sample = ReferSample(root / dataset, image_dir, dataset, split_by or layout.split_by, protocol)
    write_instances(sample.instances, images, annotations, categories)
    sample.refs.write_bytes(py2_pickle(refs, protocol))
    return sample


def _object(
    rng: random.Random,
    ann_id: int,
    image_id: int,
    size: tuple[int, int],
    categories: list[dict[str, Any]],
) -> tuple[dict[str, Any], list[list[float]]]:
    """An object's instances record (polygons, stored extent and shoelace area) and its parts."""
    width, height = size
    category = categories[rng.randrange(len(categories))]
    radius = rng.uniform(0.1, 0.2) * min(width, height)
    cx, cy = rng.uniform(radius, width - radius), rng.uniform(radius, height - radius)
    parts = [star_polygon(rng, cx, cy, radius, 10)]
    if ann_id % 4 == 0:  # an occluded object seen in two parts
        parts.append(star_polygon(rng, width - cx, height - cy, radius * 0.5, 8))
    drawn = list(parts)
    if ann_id % 4 == 1:  # a leftover 2-point part inside the object's extent
        parts.append(sliver_part(cx, cy))
    record = {
        "segmentation": parts,
        "area": round(sum(shoelace_area(p) for p in parts), 3),
        "iscrowd": 0,
        "image_id": image_id,
        "bbox": extent_xywh(parts),
        "category_id": category["id"],
        "id": ann_id,
    }
    return record, drawn


def write_instances(
    path: Path,
    images: list[dict[str, Any]],
    annotations: list[dict[str, Any]],
    categories: list[dict[str, Any]],
) -> None:
    """A COCO-2014-train-style instances.json, as refer and gRefCOCO ship beside their refs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    instances = {
        "info": {"description": "This is stable 1.0 version of the 2014 MS COCO dataset."},
        "images": images,
        "licenses": [{"url": "http://creativecommons.org/licenses/by-nc-sa/2.0/", "id": 1}],
        "annotations": annotations,
        "categories": categories,
    }
    path.write_bytes(orjson.dumps(instances))


def add_bad_refer_records(sample: ReferSample) -> dict[str, int]:
    """Append one broken record of each kind real files and damaged copies show.

    Returns the refs and sentences added, so callers can check `in = out + quarantined`. Every
    bad ref has ref_id 90000 + n and split `train`; each should end in quarantine with its own
    reason (`ref 90001` ...), except ref 90012, which keeps its one good sentence.
    """
    instances = orjson.loads(sample.instances.read_bytes())
    # rewritten from the raw byte strings, so the latin-1 sentence stays latin-1 bytes
    data = sample.refs.read_bytes()
    raw_refs = PlainUnpickler(io.BytesIO(data), encoding="bytes").load()
    refs = loads_plain(data)
    image = instances["images"][0]
    other_image = instances["images"][1]
    width, height = image["width"], image["height"]
    good = next(r for r in refs if r["image_id"] == image["id"])
    good_ann = next(a for a in instances["annotations"] if a["id"] == good["ann_id"])
    square = [[10.0, 10.0, 40.0, 10.0, 40.0, 30.0, 10.0, 30.0]]

    def ann(ann_id: int, image_id: int = image["id"], **fields: Any) -> dict[str, Any]:
        base = {"segmentation": square, "area": 600.0, "iscrowd": 0, "image_id": image_id}
        base.update({"bbox": [10.0, 10.0, 30.0, 20.0], "category_id": good_ann["category_id"]})
        return {k: v for k, v in {**base, "id": ann_id, **fields}.items() if v is not None}

    Image.new("RGB", (width + 10, height), (0, 0, 0)).save(sample.images / "resized.jpg")
    instances["images"] += [
        {"file_name": "missing.jpg", "height": height, "width": width, "id": 9001},
        {"file_name": "../../../outside.jpg", "height": height, "width": width, "id": 9002},
        {"file_name": "resized.jpg", "height": height, "width": width, "id": 9003},
        {"file_name": "no_width.jpg", "height": height, "id": 9004},
    ]
    empty = [[5.0, 5.0, 5.0, 5.0, 5.0, 5.0]]
    bad_segmentation = (
        {"size": [height, width], "counts": "zzzz"}  # outside the string encoding
        if LAYOUTS[sample.dataset].saiapr
        else [10.0, 10.0, 40.0, 10.0, 40.0, 30.0]  # flat, unnested: pycocotools raises
    )
    instances["annotations"] += [
        ann(9101, image_id=9001),
        ann(9102, image_id=9002),
        ann(9103, image_id=9003),
        ann(9104, segmentation=empty, bbox=None),  # no pixel and no box
        ann(9105, segmentation=bad_segmentation),
        ann(9106, segmentation=[[10.0, 10.0, 1e9, 10.0, 40.0, 30.0]]),  # a vertex far outside
        ann(9107, category_id="1"),  # unusable record
        ann(9108, image_id=other_image["id"]),
        ann(9109, segmentation={"counts": [5, 5], "size": [height + 1, width]}),
    ]

    def ref(n: int, **fields: Any) -> dict[str, Any]:
        sentence = {"tokens": ["bad", "ref"], "raw": "bad ref", "sent_id": 90000 + n}
        base = {"sent_ids": [90000 + n], "file_name": f"bad_{n}.jpg", "ann_id": good["ann_id"]}
        base.update({"ref_id": 90000 + n, "image_id": image["id"], "split": "train"})
        base.update({"sentences": [{**sentence, "sent": f"bad ref {n}"}]})
        return {**base, "category_id": good["category_id"], **fields}

    no_sent = {"tokens": [], "raw": "", "sent_id": 90100}
    bad_refs = [
        {k: v for k, v in ref(1).items() if k != "ann_id"},  # missing key
        ref(2, image_id=str(image["id"])),  # wrong type
        ref(3, ann_id=123456789),  # names no annotation
        ref(4, image_id=987654),  # names no image
        ref(5, ann_id=9108),  # its annotation is on another image
        ref(6, ref_id=good["ref_id"]),  # a ref id used before
        ref(7, category_id=good["category_id"] + 1000),  # disagrees with its annotation
        ref(8, sentences=[]),
        ref(9, ann_id=9107),  # its annotation record is unusable
        ref(10, image_id=9004, ann_id=9101),  # its image record is unusable
        ref(11, split=None),
        ref(12, sentences=[*ref(12)["sentences"], no_sent, {**no_sent, "sent": " "}, 7]),
        ref(13, sentences=[no_sent]),  # every sentence unusable
        ref(14, image_id=9001, ann_id=9101),  # missing image file
        ref(15, image_id=9002, ann_id=9102),  # path escaping the image root
        ref(16, image_id=9003, ann_id=9103),  # file size differs from the record
        ref(17, ann_id=9104),  # empty mask
        ref(18, ann_id=9105),  # bad segmentation
        ref(19, ann_id=9106),  # polygon far outside the image
        ref(20, ann_id=9109),  # RLE of another size
        ref(21, ann_id=True),  # a bool is not an id
    ]
    sample.instances.write_bytes(orjson.dumps(instances))
    sample.refs.write_bytes(py2_pickle([*raw_refs, *bad_refs, "not a ref"], sample.protocol))
    sentences = sum(len(r["sentences"]) for r in bad_refs)
    return {"ref": len(bad_refs) + 1, "sentence": sentences}
