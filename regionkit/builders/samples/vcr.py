"""A small VCR source in its real layout: `{split}.jsonl` plus `vcr1images/` with metadata.

Writes `train.jsonl`, `val.jsonl` and `test.jsonl` under the root and, under `vcr1images/`,
`lsmdc_<movie>/<movie>_<start>-<end>@<k>.jpg` with its metadata `.json` beside it, with the
quirks of the real files:

- lines carry every key of a real val line (`interesting_scores`, `answer_likelihood`,
  `answer_match_iter`, `answer_sources`, `match_fold`, ...), and each split has its own movies;
- tokens are words or lists of 0-based object indices (`[0]`, `[1, 2]`, `[0, 1, 2]`), with
  `'s` and `n't` split off as VCR's tokenizer does, while `*_orig` strings number from 1;
- test lines have no labels, no `*_orig` strings and none of the keys that would reveal the
  labels (`answer_sources`, `answer_match_iter` and their rationale twins): worked out from
  how r2c reads them, not seen in a raw file;
- metadata `boxes` are float xyxy plus a detector score, `segms` nested `[[x, y], ...]` int
  polygons (object 1 of every image in two parts), `names` equal to the line's `objects`;
- the last box of each split's first image reaches a little past the right border (not seen
  in a real file; it exercises the clipping the builder promises).
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from regionkit.builders.samples.shapes import star_polygon

SPLITS = ("train", "val", "test")
MOVIES = {
    "train": ("3015_CHARLIE_ST_CLOUD", "1017_Bad_Santa"),
    "val": ("1054_Harry_Potter_and_the_prisoner_of_azkaban",),
    "test": ("1004_Juno",),
}
OTHER_NAMES = ("car", "cellphone", "clock", "chair", "bottle", "dog", "cup")
LIKELIHOODS = ("possible", "likely", "certain", "unlikely")
PALETTE = ((220, 60, 60), (60, 160, 60), (60, 90, 220), (230, 180, 40), (160, 60, 200))

# Each entry: a question, 4 answers, 4 rationales. `{0}` is object 0, `{1,2}` objects 1 and 2;
# objects 0-2 are persons and object 3 a thing in every sample image.
QUESTIONS = (
    (
        "Does {0} live in this house ?",
        (
            "No , {0} lives nowhere close .",
            "Yes , {0} works there .",
            "No , {0} is a visitor .",
            "No {1} does n't belong here .",
        ),
        (
            "{0} is nicely dressed .",
            "{2} sits down and {0} has a coat .",
            "{1} is wearing a uniform .",
            "{0} is wearing outerwear , holding an umbrella , and there is a {3} outside .",
        ),
    ),
    (
        "Why is {0} looking at {1,2} ?",
        (
            "{0} is waiting for {1,2} to answer .",
            "{1,2} are arguing loudly .",
            "{0} wants {1} 's {3} .",
            "{0,1,2} are old friends .",
        ),
        (
            "{1} has an open mouth and {0} is frowning .",
            "{0} is leaning towards {1,2} .",
            "{2} 's hand points at the {3} .",
            "People often stare when they are confused .",
        ),
    ),
    (
        "What is {1} 's job ?",
        (
            "{1} is a teacher .",
            "{1} is a police officer .",
            "{1} does n't have a job .",
            "{1} is a waiter serving {0} .",
        ),
        (
            "{1} is wearing an apron and holding a tray .",
            "{1} carries a badge .",
            "{1} stands in front of a blackboard .",
            "{0} is looking up at {1} ( who is standing ) .",
        ),
    ),
)
PLACEHOLDER = re.compile(r"^\{(\d+(?:,\d+)*)\}$")


@dataclass(frozen=True)
class VcrSample:
    """Where a written VCR sample lives: `root` holds `{split}.jsonl`, `images` is vcr1images/."""

    root: Path
    images: Path
    splits: tuple[str, ...]


def tokens_of(template: str) -> list[Any]:
    """`"Does {0} live ?"` -> `["Does", [0], "live", "?"]`, VCR's token form."""
    tokens: list[Any] = []
    for word in template.split():
        match = PLACEHOLDER.match(word)
        tokens.append([int(i) for i in match.group(1).split(",")] if match else word)
    return tokens


def orig_of(template: str) -> str:
    """The `*_orig` string: objects numbered from 1, punctuation attached as people type it."""

    def numbers(match: re.Match[str]) -> str:
        ones = [str(int(i) + 1) for i in match.group(1).split(",")]
        return ones[0] if len(ones) == 1 else f"{', '.join(ones[:-1])} and {ones[-1]}"

    text = re.sub(r"\{(\d+(?:,\d+)*)\}", numbers, template)
    return re.sub(r" ([,.?!)]|'s|n't)", r"\1", text).replace("( ", "(")


def _objects(rng: random.Random, width: int, height: int, overhang: bool) -> list[dict[str, Any]]:
    """Three persons and a few things, each a box with score and nested int polygons."""
    names = ["person", "person", "person", *rng.sample(OTHER_NAMES, rng.randint(1, 3))]
    objects = []
    for k, name in enumerate(names):
        w, h = rng.uniform(0.25, 0.45) * width, rng.uniform(0.4, 0.8) * height
        x1, y1 = rng.uniform(0, width - w), rng.uniform(0, height - h)
        x2 = width + 0.37 if overhang and k == len(names) - 1 else x1 + w
        cx, cy, radius = (x1 + x2) / 2, y1 + h / 2, min(x2 - x1, h) / 2
        parts = [star_polygon(rng, cx, cy, radius * 0.9, 10)]
        if k == 1:  # an object seen in two pieces
            parts = [
                star_polygon(rng, x1 + w / 4, cy, w / 5, 8),
                star_polygon(rng, x2 - w / 4, cy, w / 5, 8),
            ]
        polygons = [
            [[round(x), round(y)] for x, y in zip(p[0::2], p[1::2], strict=True)] for p in parts
        ]
        box = [round(x1, 2), round(y1, 2), round(x2, 2), round(y1 + h, 2)]
        score = round(rng.uniform(0.5, 0.9999), 4)
        objects.append({"name": name, "box": [*box, score], "polygons": polygons})
    return objects


def write_metadata(path: Path, objects: list[dict[str, Any]], width: int, height: int) -> None:
    """The per-image metadata json in the real key order: boxes, segms, names, width, height."""
    metadata = {
        "boxes": [o["box"] for o in objects],
        "segms": [o["polygons"] for o in objects],
        "names": [o["name"] for o in objects],
        "width": width,
        "height": height,
    }
    path.write_text(json.dumps(metadata))


def write_image(
    path: Path, objects: list[dict[str, Any]], width: int, height: int, draw: bool
) -> None:
    """A JPEG of the metadata's size, with the polygons and boxes drawn when `draw` is set."""
    canvas = Image.new("RGB", (width, height), (190, 190, 180) if draw else (128, 128, 128))
    if draw:
        pen = ImageDraw.Draw(canvas)
        for k, obj in enumerate(objects):
            for polygon in obj["polygons"]:
                pen.polygon([tuple(p) for p in polygon], fill=PALETTE[k % len(PALETTE)])
            pen.rectangle(obj["box"][:4], outline=(0, 0, 0))
    canvas.save(path, quality=85)


def _line(
    rng: random.Random,
    split: str,
    annot: int,
    image: dict[str, Any],
    question_number: int,
    template: tuple[str, tuple[str, ...], tuple[str, ...]],
) -> dict[str, Any]:
    """One question line with every key a real line of `split` has."""
    question, answers, rationales = template
    answer_label, rationale_label = rng.randrange(4), rng.randrange(4)
    match_index = annot % 7

    def sources(label: int) -> list[int]:
        values = [rng.randrange(2, 30000) for _ in range(4)]
        values[label] = match_index  # as in the real val line: the right choice's source
        return values

    line: dict[str, Any] = {
        "movie": image["movie"],
        "objects": image["names"],
        "interesting_scores": [rng.choice((-1, 0, 1)) for _ in range(rng.randint(1, 3))],
        "answer_likelihood": rng.choice(LIKELIHOODS),
        "img_fn": image["img_fn"],
        "metadata_fn": image["metadata_fn"],
    }
    if split != "test":
        line |= {
            "answer_orig": orig_of(answers[answer_label]),
            "question_orig": orig_of(question),
            "rationale_orig": orig_of(rationales[rationale_label]),
        }
    line["question"] = tokens_of(question)
    if split != "test":
        line["answer_match_iter"] = rng.sample(range(4), 4)
        line["answer_sources"] = sources(answer_label)
    line["answer_choices"] = [tokens_of(a) for a in answers]
    if split != "test":
        line["answer_label"] = answer_label
    line["rationale_choices"] = [tokens_of(r) for r in rationales]
    if split != "test":
        line |= {
            "rationale_sources": sources(rationale_label),
            "rationale_match_iter": rng.sample(range(4), 4),
            "rationale_label": rationale_label,
        }
    line |= {
        "img_id": image["img_id"],
        "question_number": question_number,
        "annot_id": f"{split}-{annot}",
        "match_fold": f"{split}-{annot % 2}",
        "match_index": match_index,
    }
    return line


def write_vcr_sample(
    root: Path,
    *,
    num_images: int = 2,
    questions_per_image: int = 2,
    size: tuple[int, int] = (240, 100),
    draw: bool = True,
    seed: int = 0,
) -> VcrSample:
    """Write a VCR-format sample under `root`: `{split}.jsonl` and `vcr1images/`.

    Args:
        root: folder to write into; it becomes `--root`, and `root/vcr1images` `--images`.
        num_images: images per split, spread over the split's movies.
        questions_per_image: question lines per image (real images have several).
        size: (width, height) of the first image; later ones grow a little, as clips vary.
        draw: draw the polygons and boxes into the images; False writes flat images (faster).
        seed: everything is a function of it.
    """
    rng = random.Random(seed)
    images_dir = root / "vcr1images"
    for split in SPLITS:
        lines, annot = [], 0
        for n in range(num_images):
            movie = MOVIES[split][n % len(MOVIES[split])]
            width, height = size[0] + 8 * n, size[1] + 4 * n
            stem = f"{movie}_00.{n:02d}.46.736-00.{n:02d}.50.168@{n % 3}"
            folder = images_dir / f"lsmdc_{movie}"
            folder.mkdir(parents=True, exist_ok=True)
            objects = _objects(rng, width, height, overhang=n == 0)
            write_metadata(folder / f"{stem}.json", objects, width, height)
            write_image(folder / f"{stem}.jpg", objects, width, height, draw)
            image = {
                "movie": movie,
                "names": [o["name"] for o in objects],
                "img_fn": f"lsmdc_{movie}/{stem}.jpg",
                "metadata_fn": f"lsmdc_{movie}/{stem}.json",
                "img_id": f"{split}-{n}",
            }
            for q in range(questions_per_image):
                template = QUESTIONS[(n + q) % len(QUESTIONS)]
                lines.append(_line(rng, split, annot, image, q, template))
                annot += 1
        text = "".join(json.dumps(line) + "\n" for line in lines)
        (root / f"{split}.jsonl").write_text(text)
    return VcrSample(root, images_dir, SPLITS)


BROKEN_MOVIE = "9999_Broken_Records"
HOLES_QUESTIONS = (
    (  # mentions object 3, whose box covers nothing
        "Why is the {3} on the table ?",
        ("{0} put it there .", "{1,2} are drinking .", "It is empty .", "{0} is thirsty ."),
        ("It is {0} 's .", "They are at a bar .", "Cups go on tables .", "{2} is waiting ."),
    ),
    (  # mentions objects 0-2 and 4 only: object 3 goes, object 4 becomes region 3
        "What is {0} doing with the {4} ?",
        ("Sitting on it .", "Moving it .", "{0} is fixing the {4} .", "Nothing ."),
        ("{0} is bent over .", "{1,2} watch .", "The {4} is broken .", "{0} holds a tool ."),
    ),
)


def _broken_image(
    folder: Path,
    stem: str,
    objects: list[dict[str, Any]],
    size: tuple[int, int],
    *,
    image_size: tuple[int, int] | None = None,
    metadata: str | None = None,
) -> dict[str, Any]:
    """Write an image and its metadata for a broken record; `image_size=(0, 0)` writes none.

    `metadata` replaces the metadata file's text (a truncated or inconsistent file).
    """
    width, height = size
    write_metadata(folder / f"{stem}.json", objects, width, height)
    if metadata is not None:
        (folder / f"{stem}.json").write_text(metadata)
    if image_size != (0, 0):
        write_image(folder / f"{stem}.jpg", objects, *(image_size or size), draw=False)
    return {
        "movie": BROKEN_MOVIE,
        "names": [o["name"] for o in objects],
        "img_fn": f"lsmdc_{BROKEN_MOVIE}/{stem}.jpg",
        "metadata_fn": f"lsmdc_{BROKEN_MOVIE}/{stem}.json",
        "img_id": "val-9999",
    }


def _holes(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Six objects: 3 a box with x2 < x1, 4 a 2-point contour beside its polygon, 5 a polygon
    that covers no pixel (a tiny detection: it stays a box-only region)."""
    objects = [dict(o) for o in objects[:3]]
    first = objects[0]["polygons"][0]
    objects.append({"name": "bottle", "box": [50.0, 20.0, 40.0, 60.0, 0.91], "polygons": [first]})
    objects.append(
        {
            "name": "chair",
            "box": [60.0, 20.0, 120.0, 80.0, 0.95],
            "polygons": [[[65, 25], [115, 25], [115, 75], [65, 75]], [[70, 30], [71, 30]]],
        }
    )
    objects.append(
        {"name": "cup", "box": [10.0, 10.0, 30.0, 30.0, 0.8], "polygons": [[[12, 12]] * 3]}
    )
    return objects


def add_bad_vcr_records(sample: VcrSample) -> dict[str, int]:
    """Append one broken record of each kind to `val.jsonl` (and a label-less `train.jsonl` line).

    Writes their images and metadata under `vcr1images/lsmdc_9999_Broken_Records/`. Returns the
    questions and objects the appended lines hold (every question is quarantined except
    `val-915`, whose row keeps 5 of its 6 objects: object 3 has no box, object 5 no pixel).
    """
    rng = random.Random(9999)
    folder = sample.images / f"lsmdc_{BROKEN_MOVIE}"
    folder.mkdir(parents=True, exist_ok=True)
    size = (200, 100)
    objects = _objects(rng, *size, overhang=False)
    good = _broken_image(folder, "good@0", objects, size)
    metadata = json.loads((folder / "good@0.json").read_text())
    short = json.dumps({**metadata, "names": metadata["names"][:-1]})
    images = {
        "truncated": _broken_image(
            folder, "truncated@0", objects, size, metadata=json.dumps(metadata)[:50]
        ),
        "short": _broken_image(folder, "short@0", objects, size, metadata=short),
        "noimage": _broken_image(folder, "noimage@0", objects, size, image_size=(0, 0)),
        "resized": _broken_image(folder, "resized@0", objects, size, image_size=(210, 100)),
        "holes": _broken_image(folder, "holes@0", _holes(objects), size),
    }

    def line(annot: int, image: dict[str, Any] = good, **changes: Any) -> dict[str, Any]:
        return {**_line(rng, "val", annot, image, 0, QUESTIONS[0]), **changes}

    bad = [
        line(902),
        line(903, answer_label="2"),
        line(904, question=["Is", [99], "here", "?"]),
        line(905, rationale_label=4),
        line(906, metadata_fn=f"lsmdc_{BROKEN_MOVIE}/absent@0.json"),
        line(907, images["truncated"]),
        line(908, images["short"]),
        line(909, objects=["dog", *good["names"][1:]]),
        line(910, images["noimage"]),
        line(911, img_fn="../../outside@0.jpg"),
        line(912, metadata_fn="../../outside@0.json"),
        line(913, images["resized"]),
        line(916),
    ]
    del bad[0]["img_fn"]
    bad[-1]["answer_choices"] = bad[-1]["answer_choices"][:3]
    holes = [
        _line(rng, "val", 914 + i, images["holes"], i, t) for i, t in enumerate(HOLES_QUESTIONS)
    ]
    val = sample.root / "val.jsonl"
    first = json.loads(val.read_text().splitlines()[0])
    texts = [
        '{"annot_id": "val-901", "question": ["Is", [0]',  # a line cut off mid-record
        "[1, 2]",  # JSON, but not a question object
        *(json.dumps(record) for record in [*bad, first, *holes]),
    ]
    with val.open("a") as file:
        file.write("".join(t + "\n" for t in texts))
    unlabelled = {k: v for k, v in first.items() if k not in ("answer_label", "rationale_label")}
    unlabelled["annot_id"] = "train-901"
    with (sample.root / "train.jsonl").open("a") as file:
        file.write(json.dumps(unlabelled) + "\n")
    added = [*bad, first, *holes, unlabelled]
    return {"question": len(texts) + 1, "object": sum(len(r["objects"]) for r in added)}
