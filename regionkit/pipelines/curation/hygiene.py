"""Split hygiene: no training row shows an image that an evaluation split shows.

RefCOCO/+/g and gRefCOCO val and test images are COCO train2014 images, and Visual Genome
shares COCO images, so a training set made from several sources can hold a benchmark's images
under other names. Every row lists every identity its image has (`image_keys`: `coco:581563`,
`vg:1`); a training row whose keys meet an evaluation split's keys is kept out, and the
quarantine line names the split that holds the image.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from regionkit.builders.base import Built, Rejected
from regionkit.pipelines.inspect import read_manifest
from regionkit.pipelines.step import Step, StepResult

EVALUATION_SPLIT = re.compile(r"^(val|test|minival|dev)", re.I)
"""Split names that hold evaluation data (`val`, `testA`, `val2017`, `test-dev`)."""


def is_evaluation_split(split: str) -> bool:
    return bool(EVALUATION_SPLIT.match(split))


def evaluation_keys(folders: list[Path]) -> dict[str, str]:
    """Every image key of the evaluation splits of the datasets in `folders`, each with the
    `source:split` that shows it first. Reads the `image_keys` column alone, shard by shard."""
    keys: dict[str, str] = {}
    for folder in folders:
        manifest = read_manifest(folder)
        sources = sorted({b["source"] for b in manifest["builders"]})
        for split, entry in sorted(manifest["splits"].items()):
            if not is_evaluation_split(split):
                continue
            where = f"{'+'.join(sources)}:{split}"
            for shard in entry["shards"]:
                table = pq.read_table(folder / shard["file"], columns=["image_keys"])
                for image_keys in table.column("image_keys").to_pylist():
                    for key in image_keys:
                        keys.setdefault(key, where)
    return keys


class KeepEvaluationImagesOut(Step):
    """Training rows whose image an evaluation split shows go to quarantine
    (`evaluation_image`); rows of evaluation splits pass, they are the evaluation data.

    Args:
        keys: image key -> the `source:split` that shows it (`evaluation_keys`).
    """

    name, version = "split_hygiene", "1"

    def __init__(self, keys: dict[str, str]) -> None:
        self.keys = keys

    def params(self) -> dict[str, Any]:
        """How many keys and their digest: other evaluation data makes another build."""
        digest = hashlib.sha256("\n".join(sorted(self.keys)).encode("utf-8")).hexdigest()
        return {"evaluation_images": len(self.keys), "evaluation_keys_sha256": digest}

    def process(self, rows: list[Built]) -> StepResult:
        result = StepResult([])
        for built in rows:
            row = built.row
            met = (
                []
                if is_evaluation_split(row["split"])
                else [k for k in row["image_keys"] if k in self.keys]
            )
            if met:
                reason = f"image {met[0]} is in the evaluation split {self.keys[met[0]]}"
                result.rejected.append(Rejected(row["id"], "evaluation_image", reason, built.units))
            else:
                result.rows.append(built)
        return result
