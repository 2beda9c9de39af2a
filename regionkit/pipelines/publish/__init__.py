"""`regionkit publish`: a built dataset onto the Hugging Face Hub, so that
`datasets.load_dataset("OWNER/NAME")` and the Hub's viewer work (see `stage` and `upload`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from regionkit.pipelines.publish.embed import PublishError
from regionkit.pipelines.publish.stage import PublishOptions, Staged, stage
from regionkit.pipelines.publish.upload import UploadFailed, UploadResult, upload

__all__ = ["PublishError", "PublishOptions", "Staged", "UploadFailed", "UploadResult", "publish"]


def publish(
    folder: Path, options: PublishOptions, dry_run: bool = False, say: Callable[[str], None] = print
) -> UploadResult | Staged:
    """Stage `folder` and upload it; with `dry_run`, only stage it (no network)."""
    staged = stage(folder, options, say)
    if dry_run:
        return staged
    return upload(staged, options, Path(folder).name, say)
