"""Hostile files for the tests: small on disk, dangerous to a careless reader.

A plain module (not a conftest) so that the data tests, the bad-input suite
and its tally script can all import it.
"""

from __future__ import annotations


def png_bomb_bytes(width: int = 20000, height: int = 20000) -> bytes:
    """A valid black RGB PNG of width×height that is small on disk (~1.6 MB at 20000×20000).

    Decoded it takes width*height*3 bytes (1.2 GB at 20000×20000): the image
    bomb a dataset reader must refuse from the header alone. Built in
    milliseconds: after a zlib full flush the compressor starts afresh, so
    every further black row compresses to the same bytes and is repeated.
    """
    import struct
    import zlib

    row = b"\0" * (width * 3 + 1)  # filter byte 0 + black pixels
    c = zlib.compressobj(9)
    first = c.compress(row) + c.flush(zlib.Z_FULL_FLUSH)  # starts with the zlib header
    same = c.compress(row) + c.flush(zlib.Z_FULL_FLUSH)
    end = c.flush(zlib.Z_FINISH)[:-4]  # the final block, without this object's checksum
    total = len(row) * height  # all zero bytes: adler32 = (total mod 65521) << 16 | 1
    body = first + same * (height - 1) + end + struct.pack(">I", ((total % 65521) << 16) | 1)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", body)
        + chunk(b"IEND", b"")
    )


#: An XML "billion laughs": ten nested entities that expand to 10**9 "lol"s if a parser expands them.
XML_ENTITY_BOMB = (
    '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    + "".join(f' <!ENTITY lol{i} "{("&lol%s;" % ("" if i == 1 else i - 1)) * 10}">\n' for i in range(1, 10))
    + "]>\n<annotation><filename>a.png</filename><object><name>&lol9;</name>"
    "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>20</xmax><ymax>20</ymax></bndbox></object></annotation>\n"
)
