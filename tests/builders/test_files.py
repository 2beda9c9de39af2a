"""Image references from untrusted annotation files: kept inside their root, checked on disk."""

from __future__ import annotations

import pytest
from PIL import Image

from regionkit.builders.files import ImagePathError, checked_image, resolve_image


@pytest.mark.parametrize(
    ("relative", "code"),
    [
        ("../outside.jpg", "path_escape"),
        ("a/../../outside.jpg", "path_escape"),
        ("/etc/passwd", "path_escape"),
        ("", "path_escape"),
        ("a\0.jpg", "bad_path"),  # open() would raise ValueError, not a quarantine reason
    ],
)
def test_references_that_leave_the_root_are_refused(tmp_path, relative, code):
    with pytest.raises(ImagePathError) as error:
        resolve_image(tmp_path, relative)
    assert error.value.code == code


def test_a_symlinked_folder_inside_the_root_is_followed(tmp_path):
    (tmp_path / "real").mkdir()
    Image.new("RGB", (5, 4)).save(tmp_path / "real" / "x.jpg")
    root = tmp_path / "root"
    root.mkdir()
    (root / "VG_100K").symlink_to(tmp_path / "real")
    path, size = checked_image(root, "VG_100K/x.jpg", (5, 4))
    assert path == root / "VG_100K" / "x.jpg" and size == (5, 4)


@pytest.mark.parametrize(
    ("name", "expected", "code"),
    [("x.jpg", (6, 4), "image_size_mismatch"), ("gone.jpg", None, "missing_image")],
)
def test_missing_or_resized_images_are_named(tmp_path, name, expected, code):
    Image.new("RGB", (5, 4)).save(tmp_path / "x.jpg")
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    with pytest.raises(ImagePathError) as error:
        checked_image(tmp_path, name, expected)
    assert error.value.code == code
    with pytest.raises(ImagePathError, match="cannot be read as an image"):
        checked_image(tmp_path, "junk.jpg")
