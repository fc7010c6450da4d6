"""Check a JPEG from its markers alone, without decoding it.

Preparing 16k images must take seconds, so an image is judged by its header (SOI marker, frame
size from the SOF segment) and its tail (the EOI marker a truncated file lacks). Decoding would
find subtler damage, but costs a hundred times more.
"""

from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

# Start-of-frame markers carry the image size; C4 (DHT), C8 (JPG) and CC (DAC) do not.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field.
_STANDALONE = frozenset(range(0xD0, 0xD8)) | {0x01}
# How far back from the end an EOI may sit before the trailing bytes are called garbage.
_TAIL = 1024


class ImageError(Exception):
    """The file is not a usable JPEG; the message says why, in a few words."""


@dataclass(frozen=True)
class JpegInfo:
    width: int
    height: int
    #: Bytes follow the EOI marker (padding some encoders add): readable, but not byte-exact.
    trailing: bool = False


def probe(path: str | Path) -> JpegInfo:
    """Size and integrity of the JPEG at ``path``."""
    try:
        with open(path, "rb") as f:
            return _probe(f, os.fstat(f.fileno()).st_size)
    except OSError as exc:
        raise ImageError(f"cannot read: {exc.strerror or exc}") from None


def probe_bytes(data: bytes) -> JpegInfo:
    """Size and integrity of a JPEG held in memory (a zip member)."""
    return _probe(io.BytesIO(data), len(data))


def _probe(f: BinaryIO, size: int) -> JpegInfo:
    if size == 0:
        raise ImageError("empty file")
    if f.read(2) != b"\xff\xd8":
        raise ImageError("not a JPEG (no SOI marker)")
    width = height = None
    while True:
        byte = f.read(1)
        if not byte:
            raise ImageError("truncated JPEG (ends inside the header)")
        if byte != b"\xff":
            raise ImageError("corrupt JPEG header (marker expected)")
        marker = f.read(1)
        while marker == b"\xff":  # fill bytes
            marker = f.read(1)
        if not marker:
            raise ImageError("truncated JPEG (ends inside the header)")
        code = marker[0]
        if code in _STANDALONE:
            continue
        if code in (0xD9, 0xDA):  # EOI or start of scan before any frame header
            raise ImageError("corrupt JPEG (no frame header before the image data)")
        raw = f.read(2)
        if len(raw) < 2:
            raise ImageError("truncated JPEG (ends inside the header)")
        (length,) = struct.unpack(">H", raw)
        if code in _SOF:
            seg = f.read(5)
            if len(seg) < 5:
                raise ImageError("truncated JPEG (ends inside the header)")
            height, width = struct.unpack(">HH", seg[1:5])
            break
        f.seek(length - 2, io.SEEK_CUR)
    if not width or not height:
        raise ImageError(f"JPEG frame header gives an empty size {width}x{height}")
    start = max(size - _TAIL, f.tell())  # never search the header's tables
    f.seek(start)
    tail = f.read(size - start)
    if tail.endswith(b"\xff\xd9"):
        return JpegInfo(width, height)
    # FF D9 cannot occur inside entropy-coded data (FF is stuffed there), so finding it near the
    # end means the image is complete and followed by padding.
    if b"\xff\xd9" in tail:
        return JpegInfo(width, height, trailing=True)
    raise ImageError("truncated JPEG (no EOI marker)")
