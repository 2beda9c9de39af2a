"""Image sizes read from JPEG and PNG headers, without an image library.

Every build checks every image file against its annotation's size. PIL's `open` parses the
whole JPEG header (quantisation and Huffman tables included) to learn the size, which made the
check about 40% of a refer build's per-image time; walking the JPEG markers to the frame header,
or reading PNG's IHDR, takes a few small reads. Anything else, or a header this walk cannot
follow, returns None and the caller asks PIL, which also reports what is wrong with the file.
"""

from __future__ import annotations

import os
from typing import BinaryIO

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_START = b"\xff\xd8"
# Start-of-frame markers: every JPEG coding (baseline, progressive, lossless, arithmetic).
JPEG_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field: TEM, RSTn.
JPEG_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD8)})
JPEG_SCAN_OR_END = frozenset({0xD9, 0xDA})


def _jpeg_size(f: BinaryIO) -> tuple[int, int] | None:
    """Walk the marker segments after SOI to the frame header; None if the walk goes astray."""
    while True:
        if f.read(1) != b"\xff":
            return None
        marker = f.read(1)
        while marker == b"\xff":  # markers may be preceded by fill bytes
            marker = f.read(1)
        if not marker or marker[0] in JPEG_SCAN_OR_END:
            return None
        if marker[0] in JPEG_STANDALONE_MARKERS:
            continue
        length = int.from_bytes(f.read(2), "big")
        if length < 2:
            return None
        if marker[0] in JPEG_FRAME_MARKERS:
            frame = f.read(5)  # precision, height, width
            if len(frame) < 5:
                return None
            height, width = int.from_bytes(frame[1:3], "big"), int.from_bytes(frame[3:5], "big")
            return (width, height) if width and height else None
        f.seek(length - 2, os.SEEK_CUR)


def header_size(f: BinaryIO) -> tuple[int, int] | None:
    """(width, height) of a JPEG or PNG file open for binary reading, else None."""
    head = f.read(24)
    if head.startswith(PNG_SIGNATURE) and head[12:16] == b"IHDR":
        width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
        return (width, height) if width and height else None
    if head.startswith(JPEG_START):
        f.seek(2)
        return _jpeg_size(f)
    return None
