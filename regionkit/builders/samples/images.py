"""Sample images: drawn when they are looked at, else one file per size hard-linked (fast)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from PIL import Image


class ImageWriter:
    """Writes sample JPEGs; without drawing, one encode per size and hard links for the rest."""

    def __init__(self, draw: bool) -> None:
        self.draw = draw
        self.templates: dict[tuple[int, int], Path] = {}

    def canvas(self, size: tuple[int, int]) -> Image.Image | None:
        return Image.new("RGB", size, (200, 200, 190)) if self.draw else None

    def write(self, path: Path, size: tuple[int, int], canvas: Image.Image | None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if canvas is not None:
            canvas.save(path, quality=85)
            return
        template = self.templates.get(size)
        if template is None:
            Image.new("RGB", size, (128, 128, 128)).save(path, quality=85)
            self.templates[size] = path
            return
        try:
            os.link(template, path)
        except OSError:  # a filesystem without hard links
            shutil.copyfile(template, path)
