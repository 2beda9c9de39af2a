"""The dataset card: the README.md that makes an output folder a Hub dataset.

Its YAML header carries `configs` (which Parquet files form which split) and `dataset_info`
(the record's features), which is all `datasets.load_dataset(folder)` needs: datasets 5 refuses
loading scripts. The body tells a person what the rows are, how many there are, what was
quarantined, and whose licenses and citations apply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from datasets import DatasetInfo, SplitDict, SplitInfo
from datasets.info import DatasetInfosDict
from huggingface_hub import DatasetCard, DatasetCardData

from regionkit.catalog.schema import FEATURES
from regionkit.catalog.sources import Source

SCHEMA_TABLE = """| field | meaning |
|---|---|
| `id` | `{source}:{split}:{native key}`, unique and stable across rebuilds |
| `source`, `split`, `task` | catalog source, the source's own split, what the row teaches |
| `image` | the image (a path by default; bytes when embedded) |
| `width`, `height` | pixels of the original image |
| `image_keys` | every identity of the image across sources (`coco:581563`, `vg:1`, ...) |
| `regions` | `id`, `bbox` (xyxy, absolute pixels), `mask` (COCO RLE or null), `category`, `attributes`, `score` |
| `groundings` | `text` and the `regions` (indices) it refers to; empty = refers to nothing |
| `captions` | texts about the whole image |
| `relations` | `subject` `predicate` `object`, indices into `regions` |
| `messages` | `role`, `content` with `<regionK>`, `<segK>`, `<rej>` markup |
| `provenance` | builder, version, generator, prompt id, source files |"""


@dataclass(frozen=True)
class Publication:
    """What a published copy adds to the card.

    Attributes:
        images_embedded: images travel as bytes in the shards (else they are paths).
        images: how many rows carry an image, and their bytes in all.
        image_bytes: the images' total size.
        restricted_accepted: sources whose terms forbid redistribution, published because the
            publisher said they may.
        preview: the preview image's path in the repository, if one is published.
        repo_id: the Hub repository it is published to.
    """

    repo_id: str
    images_embedded: bool
    images: int = 0
    image_bytes: int = 0
    restricted_accepted: list[str] = field(default_factory=list)
    preview: str | None = None


OTHER_LICENSE = {"license_name": "terms-of-the-sources", "license_link": "README.md"}
"""For `license: other`: each source's own terms, which the card lists with its citation."""


def card_data(manifest: dict[str, Any], sources: list[Source]) -> DatasetCardData:
    """The card's YAML header: license, the `configs` that map splits to shards, and the
    `dataset_info` (features and split sizes) that `datasets` writes when it pushes a dataset."""
    # a split without rows is left out: `datasets` refuses a declared split it finds no data for
    splits = {name: split for name, split in manifest["splits"].items() if split["rows"]}
    licenses = sorted({s.license for s in sources})
    license_id = licenses[0] if len(licenses) == 1 else "other"
    # the Hub asks a custom license for a name and a link: here, the card's sources section
    custom = OTHER_LICENSE if license_id == "other" else {}
    data = DatasetCardData(
        license=license_id,
        **custom,
        pretty_name=manifest["name"],
        tags=["regionkit", "region-grounding", "segmentation"],
        configs=[
            {
                "config_name": "default",
                "data_files": [
                    {"split": name, "path": f"data/{name}-*.parquet"} for name in splits
                ],
            }
        ],
    )
    info = DatasetInfo(
        features=FEATURES,
        splits=SplitDict(
            {name: SplitInfo(name=name, num_examples=s["rows"]) for name, s in splits.items()}
        ),
    )
    DatasetInfosDict({"default": info}).to_dataset_card_data(data)
    return data


def _counts_table(manifest: dict[str, Any]) -> str:
    lines = ["| unit | in | out | quarantined |", "|---|---:|---:|---:|"]
    for unit, c in manifest["counts"]["units"].items():
        lines.append(f"| {unit} | {c['in']} | {c['out']} | {c['quarantined']} |")
    return "\n".join(lines)


def render_card(
    manifest: dict[str, Any], sources: list[Source], publication: Publication | None = None
) -> str:
    """The README.md for an output folder, from its manifest and the catalog entries it used;
    with `publication`, for its published copy."""
    header = card_data(manifest, sources).to_yaml()
    body = _body(manifest, sources, publication)
    return str(DatasetCard(f"---\n{header}\n---\n{body}"))


def _recipe_section(manifest: dict[str, Any]) -> str:
    """How a recipe made the rows: generators and prompts, quality checks, split hygiene."""
    recipe = manifest.get("recipe")
    if not recipe:
        return ""
    lines = [f"## How it was made\n\nRecipe `{recipe['name']}`, step by step (rows in -> out):\n"]
    for step in recipe["steps"]:
        params = step.get("params", {})
        what = []
        if "generator" in params:
            generator = params["generator"]
            model = generator.get("model")
            what.append(
                f"generator `{generator['name']}`" + (f" (model `{model}`)" if model else "")
            )
        if "prompt_id" in params:
            what.append(f"prompt `{params['prompt_id']}`")
        if step["name"] == "split_hygiene" and "evaluation_images" in params:
            what.append(
                f"training rows checked against {params['evaluation_images']} evaluation "
                "images (a row showing one is rejected)"
            )
        if step["name"] == "quality":
            what.append("checks " + ", ".join(f"{k} {v}" for k, v in sorted(params.items())))
        rejected = ", ".join(f"`{code}` {n}" for code, n in sorted(step["rejected"].items()))
        detail = "; ".join(what) + (f"; rejected: {rejected}" if rejected else "")
        lines.append(
            f"- `{step['name']}` v{step['version']}: {step['rows_in']} -> {step['rows_out']}"
            + (f"; {detail}" if detail else "")
        )
    return "\n".join(lines) + "\n"


def _images_section(manifest: dict[str, Any], publication: Publication | None) -> str:
    if publication is None:
        return (
            f"Images are referenced by path under the image root `{manifest['image_root']}`; "
            "move the images and remap that prefix, or publish with embedded image bytes."
        )
    if publication.images_embedded:
        text = (
            f"The images are included: {publication.images} images "
            f"({publication.image_bytes / 1e6:.1f} MB) embedded as bytes in the Parquet shards, "
            "under their sources' terms below."
        )
    else:
        text = "The images are not included; rows name image files by path."
    if publication.restricted_accepted:
        names = ", ".join(f"`{n}`" for n in publication.restricted_accepted)
        text += (
            f"\n\n**Published with `--accept-restricted-licenses`:** the terms of {names} do "
            "not allow redistribution; the publisher stated they have the right to share this."
        )
    if publication.preview:
        text += f"\n\n![a few rows]({publication.preview})"
    return text


def _body(manifest: dict[str, Any], sources: list[Source], publication: Publication | None) -> str:
    """The card's text for people: splits, counts, quarantine, schema, licenses, citations."""
    split_lines = "\n".join(
        f"| {name} | {s['rows']} | {len(s['shards'])} |" for name, s in manifest["splits"].items()
    )
    reasons = manifest["counts"]["quarantine_reasons"]
    reason_lines = (
        "\n".join(f"- `{code}`: {n}" for code, n in reasons.items()) or "- nothing was quarantined"
    )
    adjustments = manifest["counts"]["adjustments"]
    adjustment_lines = (
        "\n".join(f"- `{code}`: {n}" for code, n in adjustments.items()) or "- nothing was changed"
    )
    source_blocks = "\n\n".join(
        f"### {s.title} (`{s.name}`)\n\n{s.homepage}\n\nLicense: {s.license_note}\n\n"
        f"```bibtex\n{s.citation}\n```"
        for s in sources
    )
    return f"""
# {manifest["name"]}

Region-level records built by regionkit {manifest["regionkit_version"]} from
{", ".join(f"`{s.name}`" for s in sources)}: one row per image of a split, with its regions
(boxes and masks), what is said about them, and where it all came from.

```python
from datasets import load_dataset
ds = load_dataset("{publication.repo_id if publication else "path/to/this/folder"}")
```

{_images_section(manifest, publication)}

## Splits

| split | rows | shards |
|---|---:|---:|
{split_lines}

{_recipe_section(manifest)}
## Counts

Every input ends in a row or in `quarantine/` with its reason: in = out + quarantined.

{_counts_table(manifest)}

Quarantine reasons (records per `stage/code`):

{reason_lines}

Inputs kept with a change (per code; e.g. a degenerate polygon part dropped from an object that
stays):

{adjustment_lines}

## Record schema

{SCHEMA_TABLE}

Region indices in `groundings`, `relations` and the markup are 0-based positions in `regions`.
Masks are COCO compressed RLE (`size` is `[height, width]`).

## Sources, licenses and citations

{source_blocks}
"""
