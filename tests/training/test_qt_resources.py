"""Reading Qt binary resource bundles (.rcc), on bundles written here to Qt's documented layout."""

from __future__ import annotations

import struct
import zlib

import pytest

from mimicry.training.qt_resources import ResourceError, parse_rcc, read_rcc


def rcc(files: dict[str, bytes], *, version: int = 2, compress: tuple[str, ...] = ()) -> bytes:
    """A bundle as ``rcc --binary`` lays one out: header, node tree (breadth first, a directory's children
    consecutive), data area, name area. ``compress``: paths stored zlib-compressed (qCompress framing)."""
    tree: dict = {}
    for path, blob in files.items():
        *dirs, leaf = path.split("/")
        node = tree
        for d in dirs:
            node = node.setdefault(d, {})
        node[leaf] = blob
    nodes = [("", tree, "")]  # (name, content, full path)
    children_of: dict[int, tuple[int, int]] = {}
    i = 0
    while i < len(nodes):
        name, content, full = nodes[i]
        if isinstance(content, dict):
            first = len(nodes)
            for child in sorted(content):
                nodes.append((child, content[child], f"{full}/{child}" if full else child))
            children_of[i] = (len(content), first)
        i += 1
    names, name_at = b"", {}
    data, data_at = b"", {}
    for index, (name, content, full) in enumerate(nodes):
        name_at[index] = len(names)
        encoded = name.encode("utf-16-be")
        names += struct.pack(">HI", len(name), 0) + encoded
        if not isinstance(content, dict):
            blob = content
            if full in compress:
                blob = struct.pack(">I", len(content)) + zlib.compress(content)
            data_at[index] = len(data)
            data += struct.pack(">I", len(blob)) + blob
    node_size = 14 if version == 1 else 22
    header = 20
    tree_at = header
    data_start = tree_at + node_size * len(nodes)
    names_start = data_start + len(data)
    out = b"qres" + struct.pack(">4I", version, tree_at, data_start, names_start)
    for index, (name, content, full) in enumerate(nodes):
        if isinstance(content, dict):
            count, first = children_of[index]
            node = struct.pack(">IHII", name_at[index], 0x02, count, first)
        else:
            flags = 0x01 if full in compress else 0x00
            node = struct.pack(">IHHHI", name_at[index], flags, 0, 0, data_at[index])
        out += node + (struct.pack(">Q", 0) if version > 1 else b"")
    return out + data + names


FILES = {
    "gcompris/src/activities/erase/resource/a.webp": b"first picture",
    "gcompris/src/activities/erase/resource/b.webp": b"second" * 50,
    "gcompris/src/activities/erase/Erase.qml": b"import QtQuick",
    "gcompris/README": "Copyright: Tim\u00e9e".encode(),
}


@pytest.mark.parametrize("version", [1, 2, 3])
def test_every_file_comes_back_with_its_path_and_bytes(version, tmp_path):
    path = tmp_path / "erase.rcc"
    path.write_bytes(rcc(FILES, version=version))
    assert read_rcc(path) == FILES


def test_zlib_compressed_files_are_decompressed():
    bundle = rcc(FILES, compress=("gcompris/src/activities/erase/resource/b.webp",))
    assert parse_rcc(bundle) == FILES


@pytest.mark.parametrize("damage", ["not a bundle", "truncated", "version", "bad zlib"])
def test_a_damaged_bundle_is_a_clear_error_not_a_crash(damage):
    bundle = rcc(FILES, compress=("gcompris/README",))
    if damage == "not a bundle":
        bundle = b"\x89PNG" + bundle[4:]
    elif damage == "truncated":
        bundle = bundle[: len(bundle) // 2]
    elif damage == "version":
        bundle = bundle[:4] + struct.pack(">I", 9) + bundle[8:]
    else:
        at = bundle.index(zlib.compress("Copyright: Tim\u00e9e".encode()))
        bundle = bundle[:at] + b"\x00\x00\x00\x00" + bundle[at + 4:]
    with pytest.raises(ResourceError):
        parse_rcc(bundle)
