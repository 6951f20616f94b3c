"""Read the files inside a Qt binary resource bundle (``.rcc``), as some Debian packages ship their art.

GCompris keeps every activity's pictures in one ``rcc`` file per activity; ``debian_art`` lists them as
works through :func:`read_rcc`. The format (Qt's ``rcc --binary`` output, versions 1 to 3): a ``qres``
header with the offsets of a node tree, a data area and a name area. A node is 14 bytes (22 from version 2,
which adds a modification time): name offset, flags, then a directory's child count and first child, or a
file's locale and data offset. Names are length-prefixed UTF-16 with a hash; a file's data is
length-prefixed and compressed with zlib (Qt's ``qCompress``: a 4-byte size first) or zstd when its flags
say so. Only reading is needed: nothing here writes or runs Qt.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

COMPRESSED, DIRECTORY, COMPRESSED_ZSTD = 0x01, 0x02, 0x04


class ResourceError(ValueError):
    """Not a Qt resource bundle, or a damaged one."""


def read_rcc(path: str | Path) -> dict[str, bytes]:
    """Every file in the bundle at ``path``: ``{inner path: bytes}`` (paths without Qt's leading ``:/``),
    in the bundle's order. Raises :class:`ResourceError` for a file that is not a well-formed bundle."""
    return parse_rcc(Path(path).read_bytes())


def parse_rcc(data: bytes) -> dict[str, bytes]:
    """:func:`read_rcc` on the bundle's bytes."""
    if len(data) < 20 or data[:4] != b"qres":
        raise ResourceError("not a Qt resource bundle (no 'qres' header)")
    version, tree, payload, names = struct.unpack(">4I", data[4:20])
    if version not in (1, 2, 3):
        raise ResourceError(f"unsupported resource format version {version}")
    node_size = 14 if version == 1 else 22

    def u16(at: int) -> int:
        return _unpack(">H", data, at)[0]

    def u32(at: int) -> int:
        return _unpack(">I", data, at)[0]

    def name(node: int) -> str:
        at = names + u32(tree + node * node_size)
        length = u16(at)
        raw = data[at + 6: at + 6 + 2 * length]
        if len(raw) != 2 * length:
            raise ResourceError("a name runs past the end of the file")
        return raw.decode("utf-16-be")

    def content(node: int) -> bytes:
        at = tree + node * node_size
        flags = u16(at + 4)
        start = payload + u32(at + 10)
        size = u32(start)
        blob = data[start + 4: start + 4 + size]
        if len(blob) != size:
            raise ResourceError("a file's data runs past the end of the file")
        if flags & COMPRESSED:
            try:
                return zlib.decompress(blob[4:])  # qCompress: the uncompressed size (4 bytes), then zlib
            except zlib.error as e:
                raise ResourceError(f"a zlib-compressed file does not decompress: {e}") from e
        if flags & COMPRESSED_ZSTD:
            raise ResourceError("a file is zstd-compressed, which this reader does not decompress")
        return blob

    out: dict[str, bytes] = {}
    pending = [(0, "")]  # node 0 is the root directory
    visited = set()
    while pending:
        node, prefix = pending.pop()
        if node in visited:
            raise ResourceError("the node tree has a cycle")
        visited.add(node)
        at = tree + node * node_size
        if u16(at + 4) & DIRECTORY:
            count, first = u32(at + 6), u32(at + 10)
            # Pushed in reverse so that the children come out in the bundle's (sorted) order.
            for child in range(first + count - 1, first - 1, -1):
                child_name = name(child)
                pending.append((child, f"{prefix}{child_name}" if not prefix else f"{prefix}/{child_name}"))
        else:
            out[prefix] = content(node)
    return out


def _unpack(fmt: str, data: bytes, at: int) -> tuple:
    try:
        return struct.unpack_from(fmt, data, at)
    except struct.error as e:
        raise ResourceError("an offset points past the end of the file") from e
