"""A Flickr30k Entities sample in the layout `annotations.zip` unpacks to, with its quirks.

Writes `Sentences/<id>.txt` (five marked-up captions), `Annotations/<id>.xml` (tab-indented
Pascal-VOC-like XML, 1-based inclusive corners), `train.txt`/`val.txt`/`test.txt` (ids in no
particular order), `UNRELATED_CAPTIONS` and `flickr30k-images/<id>.jpg`. Each image carries the
quirks of the real files: ids of different lengths, a multi-type phrase (`/bodyparts/people`),
`EN#0/notvisual` three times, a chain repeated across sentences and one whose type changes between
sentences, lines without the trailing ` .`, (odd images) a file ending with an empty line, one box
shared by two chains (two `<name>`s), a chain with two boxes, a scene object and a no-box object
(both tags each), a box touching the left edge and one reaching a pixel past the bottom edge.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

SPLITS = ("train", "val", "test")
PALETTE = [(220, 60, 60), (60, 160, 60), (60, 90, 220), (230, 180, 40), (160, 60, 200)]
UNRELATED_SENTENCE = "A dog runs through the snow ."
"""The fifth caption of the last train image, listed in UNRELATED_CAPTIONS (no markup, as such)."""


@dataclass(frozen=True)
class Flickr30kSample:
    """Where a written sample lives and what its index files list.

    Attributes:
        root: the `--root` folder (Sentences/, Annotations/, the split files).
        images: the `--images` folder, `root/flickr30k-images`.
        splits: the ids each split file lists, in file order.
        unrelated_image: the image whose fifth caption UNRELATED_CAPTIONS lists.
    """

    root: Path
    images: Path
    splits: dict[str, tuple[str, ...]]
    unrelated_image: str | None


@dataclass(frozen=True)
class _Object:
    """One `<object>`: its chain ids and a 1-based inclusive box, or scene/nobndbox flags."""

    names: tuple[int, ...]
    box: tuple[int, int, int, int] | None = None
    scene: int = 0
    nobndbox: int = 0


def _sentences(chain: dict[str, int], unrelated: bool) -> list[str]:
    """The five captions; `chain` maps roles to the image's global chain ids."""
    lines = [
        f"[/EN#{chain['guys']}/people Two young guys] with "
        f"[/EN#{chain['hair']}/bodyparts/people shaggy hair] look at "
        f"[/EN#{chain['hands']}/other their hands] while hanging out in "
        f"[/EN#{chain['yard']}/scene the yard] .",
        f"[/EN#{chain['guys']}/people Two young , White males] are outside near "
        f"[/EN#{chain['shirts']}/clothing green shirts]",
        f"[/EN#{chain['man']}/people A man] in [/EN#{chain['shirts']}/clothing a blue shirt] "
        f"standing in [/EN#{chain['yard']}/scene a garden] .",
        f"[/EN#{chain['guys']}/people Two friends] enjoy [/EN#{chain['time']}/other time] "
        "spent together at [/EN#0/notvisual the moment] .",
        f"[/EN#{chain['hands']}/people Their hands] hold [/EN#0/notvisual something] for "
        "[/EN#0/notvisual a while]",
    ]
    return [*lines[:4], UNRELATED_SENTENCE] if unrelated else lines


def _box(rng: random.Random, width: int, height: int) -> tuple[int, int, int, int]:
    """A random 1-based inclusive box inside the image."""
    xmin, ymin = rng.randint(1, width // 2), rng.randint(1, height // 2)
    return xmin, ymin, rng.randint(xmin + 4, width), rng.randint(ymin + 4, height)


def _objects(rng: random.Random, chain: dict[str, int], width: int, height: int) -> list[_Object]:
    """The image's objects in file order; the scene object sits between boxes, as it may."""
    guys = _box(rng, width, height)
    return [
        _Object((chain["guys"],), (1, guys[1], guys[2], guys[3])),  # touches the left edge
        _Object((chain["hands"],), _box(rng, width, height)),
        _Object((chain["hands"],), _box(rng, width, height)),  # a chain with two boxes
        _Object((chain["yard"],), scene=1, nobndbox=0),
        _Object((chain["guys"], chain["man"]), _box(rng, width, height)),  # shared box
        _Object((chain["hair"],), _box(rng, width, height)),
        _Object((chain["shirts"],), (*_box(rng, width, height)[:3], height + 1)),  # past bottom
        _Object((chain["time"],), scene=0, nobndbox=1),
    ]


def annotation_xml(image_id: str, width: int, height: int, objects: list[_Object]) -> str:
    """An Annotations file as the dataset writes it: tab-indented, one tag per line."""
    lines = [
        "<annotation>",
        f"\t<filename>{image_id}.jpg</filename>",
        "\t<size>",
        f"\t\t<width>{width}</width>",
        f"\t\t<height>{height}</height>",
        "\t\t<depth>3</depth>",
        "\t</size>",
    ]
    for obj in objects:
        lines.append("\t<object>")
        lines += [f"\t\t<name>{name}</name>" for name in obj.names]
        if obj.box is None:
            lines += [f"\t\t<scene>{obj.scene}</scene>", f"\t\t<nobndbox>{obj.nobndbox}</nobndbox>"]
        else:
            lines.append("\t\t<bndbox>")
            lines += [
                f"\t\t\t<{tag}>{value}</{tag}>"
                for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), obj.box, strict=True)
            ]
            lines.append("\t\t</bndbox>")
        lines.append("\t</object>")
    lines.append("</annotation>")
    return "\n".join(lines) + "\n"


def _write_image(path: Path, width: int, height: int, objects: list[_Object], draw: bool) -> None:
    """A JPEG of the annotated size; with `draw`, each box outlined on the pixels it covers."""
    canvas = Image.new("RGB", (width, height), (200, 200, 190) if draw else (128, 128, 128))
    if draw:
        pen = ImageDraw.Draw(canvas)
        for k, obj in enumerate(o for o in objects if o.box is not None):
            xmin, ymin, xmax, ymax = obj.box
            pen.rectangle([xmin - 1, ymin - 1, xmax - 1, ymax - 1], outline=PALETTE[k % 5], width=2)
    canvas.save(path, quality=85)


def write_image_files(
    root: Path,
    image_id: str,
    *,
    rng: random.Random,
    size: tuple[int, int],
    draw: bool = True,
    unrelated: bool = False,
    trailing_empty_line: bool = False,
) -> dict[str, int]:
    """Write one image's Sentences, Annotations and JPEG; return the units they hold."""
    width, height = size
    base = int(image_id) % 100_000 * 100  # chain ids are global in the real data
    roles = ("guys", "hair", "hands", "yard", "shirts", "man", "time")
    chain = {role: base + k + 1 for k, role in enumerate(roles)}
    objects = _objects(rng, chain, width, height)
    text = "\n".join(_sentences(chain, unrelated)) + "\n"
    (root / "Sentences" / f"{image_id}.txt").write_text(
        text + ("\n" if trailing_empty_line else "")
    )
    (root / "Annotations" / f"{image_id}.xml").write_text(
        annotation_xml(image_id, width, height, objects)
    )
    _write_image(root / "flickr30k-images" / f"{image_id}.jpg", width, height, objects, draw)
    boxes = sum(o.box is not None for o in objects)
    return {"image": 1, "caption": 5, "box": boxes, "nobox": len(objects) - boxes}


def write_flickr30k_sample(
    root: Path,
    *,
    num_images: int = 6,
    size: tuple[int, int] = (160, 120),
    draw: bool = True,
    seed: int = 0,
) -> Flickr30kSample:
    """Write a Flickr30k Entities sample under `root`.

    Args:
        root: folder to write into (it becomes `--root`; images go to `root/flickr30k-images`).
        num_images: images to write; image n goes to train, val or test as n % 5 is 0-2, 3 or 4.
        size: (width, height) of even images; odd images are transposed to vary the aspect.
        draw: outline the boxes in the images (previews); False writes flat images (faster).
        seed: ids, boxes and split file order are a function of it.
    """
    rng = random.Random(seed)
    for folder in ("Sentences", "Annotations", "flickr30k-images"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    ids = _image_ids(rng, num_images)
    splits: dict[str, list[str]] = {split: [] for split in SPLITS}
    for n, image_id in enumerate(ids):
        splits[SPLITS[max(n % 5 - 2, 0)]].append(image_id)
    unrelated_id = splits["train"][-1] if splits["train"] else None
    for n, image_id in enumerate(ids):
        write_image_files(
            root,
            image_id,
            rng=rng,
            size=size if n % 2 == 0 else (size[1], size[0]),
            draw=draw,
            unrelated=image_id == unrelated_id,
            trailing_empty_line=n % 2 == 1,
        )
    for split, members in splits.items():
        rng.shuffle(members)  # the real lists are not sorted
        (root / f"{split}.txt").write_text("".join(f"{i}\n" for i in members))
    entries = [f"{unrelated_id} 5"] if unrelated_id else []
    entries.append("129602216 5")  # the real file lists images of every split
    (root / "UNRELATED_CAPTIONS").write_text(
        "# format: <imageID> <sentence number>\n" + "".join(f"{e}\n" for e in entries)
    )
    return Flickr30kSample(
        root,
        root / "flickr30k-images",
        {split: tuple(m) for split, m in splits.items()},
        unrelated_id,
    )


def _image_ids(rng: random.Random, count: int) -> list[str]:
    """Flickr ids of 5 to 10 digits, first two real ones, so text order is not numeric order."""
    ids = ["36979", "1000092795"][:count]
    while len(ids) < count:
        digits = rng.randint(5, 10)
        candidate = str(rng.randrange(10 ** (digits - 1), 10**digits))
        ids += [] if candidate in ids else [candidate]
    return ids


def add_bad_flickr30k_records(sample: Flickr30kSample) -> dict[str, int]:
    """Add one broken record of each kind real files show; return the units added, all bad.

    Box, object and caption records are appended to the first train image's files (that image
    still builds); whole images go into train.txt. Boxes inside the truncated XML are not
    counted: an unparsable file holds no countable objects.
    """
    root, host = sample.root, sample.splits["train"][0]
    units = {"image": 0, "caption": 0, "box": 0, "nobox": 0}
    _append_bad_objects(root / "Annotations" / f"{host}.xml", units)
    with (root / "Sentences" / f"{host}.txt").open("a") as f:
        f.write("[/EN#5/people A man in the park .\nA man] stands on [/EN#6/scene the grass] .\n")
    units["caption"] += 2

    rng = random.Random(99)
    listed = [host, "../x"]  # listed twice, and a path escape attempt
    units["image"] += 2
    for n, break_image in enumerate(_BAD_IMAGES.values()):
        image_id = str(990000000 + n)
        added = write_image_files(root, image_id, rng=rng, size=(96, 72), draw=False)
        added = break_image(root, image_id, added)
        units = {k: units[k] + added.get(k, 0) for k in units}
        listed.append(image_id)
    with (root / "train.txt").open("a") as f:
        f.write("".join(f"{i}\n" for i in listed))
    return units


def _append_bad_objects(path: Path, units: dict[str, int]) -> None:
    """Objects with a missing corner, a non-integer corner, a box outside, no name, no flags."""
    bad = (
        "\t<object>\n\t\t<name>901</name>\n\t\t<bndbox>\n\t\t\t<xmin>3</xmin>\n"
        "\t\t\t<ymin>3</ymin>\n\t\t\t<xmax>30</xmax>\n\t\t</bndbox>\n\t</object>\n"
        "\t<object>\n\t\t<name>902</name>\n\t\t<bndbox>\n\t\t\t<xmin>12.5</xmin>\n"
        "\t\t\t<ymin>3</ymin>\n\t\t\t<xmax>30</xmax>\n\t\t\t<ymax>30</ymax>\n\t\t</bndbox>\n"
        "\t</object>\n"
        "\t<object>\n\t\t<name>903</name>\n\t\t<bndbox>\n\t\t\t<xmin>5000</xmin>\n"
        "\t\t\t<ymin>3</ymin>\n\t\t\t<xmax>5010</xmax>\n\t\t\t<ymax>30</ymax>\n\t\t</bndbox>\n"
        "\t</object>\n"
        "\t<object>\n\t\t<bndbox>\n\t\t\t<xmin>3</xmin>\n\t\t\t<ymin>3</ymin>\n"
        "\t\t\t<xmax>30</xmax>\n\t\t\t<ymax>30</ymax>\n\t\t</bndbox>\n\t</object>\n"
        "\t<object>\n\t\t<name>905</name>\n\t</object>\n"
    )
    text = path.read_text()
    path.write_text(text.replace("</annotation>", bad + "</annotation>"))
    units["box"] += 4
    units["nobox"] += 1


def _missing_sentences(root: Path, image_id: str, units: dict[str, int]) -> dict[str, int]:
    (root / "Sentences" / f"{image_id}.txt").unlink()
    return {**units, "caption": 0}


def _missing_annotation(root: Path, image_id: str, units: dict[str, int]) -> dict[str, int]:
    (root / "Annotations" / f"{image_id}.xml").unlink()
    return {**units, "box": 0, "nobox": 0}


def _truncated_xml(root: Path, image_id: str, units: dict[str, int]) -> dict[str, int]:
    path = root / "Annotations" / f"{image_id}.xml"
    text = path.read_text()
    path.write_text(text[: text.index("\t<object>") + 5])
    return {**units, "box": 0, "nobox": 0}


def _doctype_xml(root: Path, image_id: str, units: dict[str, int]) -> dict[str, int]:
    path = root / "Annotations" / f"{image_id}.xml"
    entities = '<!DOCTYPE annotation [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>\n'
    path.write_text(entities + path.read_text().replace("<depth>3", "<depth>&b;"))
    return {**units, "box": 0, "nobox": 0}


def _no_width(root: Path, image_id: str, units: dict[str, int]) -> dict[str, int]:
    path = root / "Annotations" / f"{image_id}.xml"
    path.write_text(
        "".join(line for line in path.read_text().splitlines(True) if "width" not in line)
    )
    return units


def _missing_image(root: Path, image_id: str, units: dict[str, int]) -> dict[str, int]:
    (root / "flickr30k-images" / f"{image_id}.jpg").unlink()
    return units


def _resized_image(root: Path, image_id: str, units: dict[str, int]) -> dict[str, int]:
    Image.new("RGB", (97, 72), (0, 0, 0)).save(root / "flickr30k-images" / f"{image_id}.jpg")
    return units


_BAD_IMAGES: dict[str, Callable[[Path, str, dict[str, int]], dict[str, int]]] = {
    "missing_sentences": _missing_sentences,
    "missing_annotation": _missing_annotation,
    "malformed_xml": _truncated_xml,
    "unsafe_xml": _doctype_xml,
    "bad_size": _no_width,
    "missing_image": _missing_image,
    "image_size_mismatch": _resized_image,
}
"""Per quarantine code, how an otherwise good image is broken (ids 990000000 + position)."""
