"""gRefCOCO (GRES, henghuiding/gRefCOCO): `grefs(unc).json` beside a COCO-2014 `instances.json`.

`grefs(unc).json` is a JSON list of refs shaped like refer's (`ref_id, image_id, split,
sentences, file_name`), generalised: a ref may refer to several objects or to none.

- `ann_id` and `category_id` are lists; scalars are accepted too. A multi-target ref grounds
  all its annotations; duplicates in the list count once.
- A no-target ref has `ann_id: [-1]` and `no_target: true`; its sentences become groundings
  with no region (regions []). -1 mixed with real ids, an empty list, or a `no_target` flag
  that disagrees with `ann_id` is a malformed ref and goes to quarantine.
- `file_name` may carry an `_x` suffix: the image is found by `image_id` in instances.json.
- A multi-target ref may include a crowd annotation (uncompressed RLE). The benchmark's ground
  truth leaves it out: ReLA's `load_grefcoco_json` skips `iscrowd` annotations and
  `G_REFER.getMaskByRef` merges only non-crowd masks. So a ref `ann_id: [1, 2]` with 2 crowd
  grounds annotation 1 alone, crowd annotations are never regions of a row, and the report
  counts each one left out as `crowd_target_left_out`. A ref whose every target is crowd has
  no ground truth (G_REFER fails on it) and goes to quarantine as `crowd_only_targets`.
- The category of a region is its annotation's; the ref's `category_id` list (parallel to
  `ann_id` in some copies, de-duplicated in others) adds nothing and is not read.

Rows, units (refs and sentences) and quarantine follow the refer builder (`refer.py`): one row
per (image, split), splits train, val, testA and testB, row source `grefcoco`. A ref whose
targets include an unusable annotation is quarantined whole, since its sentences describe the
full set of targets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from regionkit.builders.fields import RecordError
from regionkit.builders.files import load_json
from regionkit.builders.refer import ReferringBuilder

NO_TARGET = -1
"""The `ann_id` of a ref that refers to nothing in its image."""


class GRefCocoBuilder(ReferringBuilder):
    """`regionkit build grefcoco --root grefcoco/ --images train2014/`."""

    source = "grefcoco"
    refs_pattern = "grefs(unc).json"
    left_out_code = "crowd_target_left_out"

    def read_refs(self, path: Path) -> Any:
        return load_json(path)

    def ref_targets(self, ref: dict[str, Any]) -> list[int]:
        if "ann_id" not in ref:
            raise RecordError("malformed_ref", "field 'ann_id' is missing")
        value = ref["ann_id"]
        ids = value if isinstance(value, list) else [value]
        if not all(type(ann_id) is int for ann_id in ids):
            raise RecordError(
                "malformed_ref", f"field 'ann_id' should be an int or a list of ints, got {value!r}"
            )
        if not ids:
            raise RecordError(
                "bad_target", f"field 'ann_id' is empty; a ref to nothing has [{NO_TARGET}]"
            )
        no_target = NO_TARGET in ids
        if no_target and len(set(ids)) > 1:
            raise RecordError(
                "bad_target",
                f"field 'ann_id' {value} mixes {NO_TARGET} (no target) with annotation ids",
            )
        flag = ref.get("no_target", no_target)
        if flag is not no_target:
            raise RecordError(
                "no_target_mismatch",
                f"field 'no_target' is {flag!r} but field 'ann_id' is {value!r}",
            )
        return [] if no_target else sorted(set(ids))

    def usable_targets(
        self, ref: dict[str, Any], anns: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """The ref's non-crowd annotations, the benchmark's ground truth."""
        kept = [ann for ann in anns if ann.get("iscrowd") != 1]
        if anns and not kept:
            crowd = ", ".join(str(ann["id"]) for ann in anns)
            raise RecordError(
                "crowd_only_targets",
                f"field 'ann_id': every target ({crowd}) is a crowd annotation, which the "
                "benchmark's ground truth leaves out, so the ref refers to nothing it can score",
            )
        return kept
