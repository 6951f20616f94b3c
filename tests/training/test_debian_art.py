"""The Debian art catalogue's grouping rules, and the per-source flag tally, on real files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mimicry.detector import Detector
from mimicry.training import debian_art, source_flags

ROOT = Path(__file__).resolve().parents[2]


def _noise(path: Path, size=(96, 64), seed=0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)


def test_group_re_groups_a_makers_files_and_leaves_the_rest_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(debian_art, "package_version", lambda package: "1.0-1")
    for i, name in enumerate(["mountain1-sfiera", "beach8-sfiera", "city2-harro", "valley3", "water0"]):
        _noise(tmp_path / "land" / f"{name}.png", seed=i)
    Image.new("RGB", (8, 8)).save(tmp_path / "land" / "tiny-sfiera.png")  # under min_bytes: not an artwork
    entry = debian_art.Entry("photographs", "some-package", str(tmp_path), ("land/*.png",), "photographs",
                             group_depth=0, min_bytes=5_000, group_re=r"^.+-([a-z]+)$")
    rows = debian_art.rows_for(entry)
    groups = {Path(r["file"]).stem: r["group"] for r in rows}
    assert set(groups) == {"mountain1-sfiera", "beach8-sfiera", "city2-harro", "valley3", "water0"}
    assert groups["mountain1-sfiera"] == groups["beach8-sfiera"] == "some-package:sfiera"
    assert groups["city2-harro"] == "some-package:harro"
    # No maker suffix: each file is its own group, so unrelated photographs are split independently.
    assert groups["valley3"] != groups["water0"] and "sfiera" not in groups["valley3"]
    assert all(r["commit"] == "1.0-1" and r["label"] == "human" for r in rows)


def test_frames_of_one_sprite_share_a_group(tmp_path, monkeypatch):
    monkeypatch.setattr(debian_art, "package_version", lambda package: "2")
    for i, name in enumerate(["void sprite adult-00", "void sprite adult-09", "deep river 2", "deep river 3", "kestrel"]):
        _noise(tmp_path / "ship" / f"{name}.png", seed=i)
    entry = debian_art.Entry("rendered-sprites", "pkg", str(tmp_path), ("ship/*.png",), "sprites", group_depth=0,
                             min_bytes=5_000, group_re=r"^(.*?)[ -]*\d*$")
    groups = {Path(r["file"]).stem: r["group"] for r in debian_art.rows_for(entry)}
    assert groups["void sprite adult-00"] == groups["void sprite adult-09"] == "pkg:void sprite adult"
    assert groups["deep river 2"] == groups["deep river 3"] == "pkg:deep river"
    assert groups["kestrel"] == "pkg:kestrel"


def test_each_group_carries_its_own_licence_and_non_commercial_groups_stay_out(tmp_path, monkeypatch):
    monkeypatch.setattr(debian_art, "package_version", lambda package: "0.22")
    licences = {"western": "CC BY-SA 4.0", "maya": "CC BY-NC-ND 4.0 International Public License", "plain": None}
    for i, (culture, licence) in enumerate(licences.items()):
        _noise(tmp_path / culture / "figure.png", seed=i)
        _noise(tmp_path / culture / "art" / "detail.png", seed=10 + i)
        if licence:
            (tmp_path / culture / "info.ini").write_text(f"[info]\nname = {culture}\nlicense = {licence}\n")
    entry = debian_art.Entry("constellation-art", "pkg-without-copyright", str(tmp_path), ("*/*.png", "*/*/*.png"),
                             "figures", group_depth=1, min_bytes=5_000, licence_file="info.ini")
    rows = debian_art.rows_for(entry)
    by_group = {}
    for r in rows:
        by_group.setdefault(r["group"], set()).add(r["licence"])
    # The non-commercial culture is left out whole; the others keep their own line, or the package's.
    assert set(by_group) == {"western", "plain"}
    assert by_group["western"] == {"CC BY-SA 4.0"}
    assert by_group["plain"] == {"see the pkg-without-copyright package's copyright file"}
    assert len(rows) == 4  # the nested file belongs to its culture's group too
    fixed = debian_art.Entry("historical-paintings", "pkg", str(tmp_path), ("western/*.png",), "paintings",
                             group_depth=0, min_bytes=5_000, licence="public-domain")
    assert [r["licence"] for r in debian_art.rows_for(fixed)] == ["public-domain"]


def test_a_file_shipped_twice_is_one_work(tmp_path, monkeypatch):
    monkeypatch.setattr(debian_art, "package_version", lambda package: "1")
    _noise(tmp_path / "western" / "aquarius.png", seed=1)
    _noise(tmp_path / "western" / "leo.png", seed=2)
    (tmp_path / "indian").mkdir()
    (tmp_path / "indian" / "aquarius.png").write_bytes((tmp_path / "western" / "aquarius.png").read_bytes())
    entry = debian_art.Entry("figures", "pkg", str(tmp_path), ("*/*.png",), "figures", group_depth=1, min_bytes=5_000)
    rows = debian_art.rows_for(entry)
    assert len(rows) == 3  # two groups hold the same bytes: either could land in test while the other trains
    seen: set[str] = set()
    kept = debian_art.unique(rows, seen)
    assert sorted(Path(r["file"]).relative_to(tmp_path).as_posix() for r in kept) == \
        ["indian/aquarius.png", "western/leo.png"]
    assert debian_art.unique(rows, seen) == []  # across entries too: what one entry listed, the next leaves out


def test_source_flags_tallies_the_detectors_own_labels_per_source(tmp_path):
    files = sorted((ROOT / "examples").glob("*.png"))
    prov = tmp_path / "prov.jsonl"
    prov.write_text("".join(json.dumps({"file": str(f), "source": f.name.split("_")[0], "label": "human"}) + "\n"
                            for f in files))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    with prov.open("a") as fh:
        fh.write(json.dumps({"file": "broken.png", "source": "real", "label": "human"}) + "\n")  # relative path
    out = tmp_path / "flags.json"
    assert source_flags.main(["--model", "default", "--provenance", str(prov), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    verdicts = {Path(v.source).name: v for v in Detector.from_dir("default").predict([str(f) for f in files])}
    for source in ("mimicry", "real"):
        mine = [v for name, v in verdicts.items() if name.startswith(source)]
        tally = result["sources"][source]
        assert tally["n"] == len(mine)
        assert tally["flagged"] == sum(v.label == "ai-mimicry" for v in mine) / len(mine)
        assert tally["uncertain"] == sum(v.label == "uncertain" for v in mine) / len(mine)
    assert result["sources"]["real"]["errors"] == 1 and result["sources"]["mimicry"]["errors"] == 0
    assert result["sources"]["mimicry"]["flagged"] > result["sources"]["real"]["flagged"]


def test_source_flags_reposts_each_file_and_leaves_out_what_a_dataset_holds(tmp_path):
    files = sorted((ROOT / "examples").glob("*.png"))
    prov = tmp_path / "prov.jsonl"
    prov.write_text("".join(json.dumps({"file": str(f), "source": f.name.split("_")[0], "label": "human",
                                        "blob": hashlib.sha1(f.read_bytes()).hexdigest()}) + "\n" for f in files))
    held = tmp_path / "manifest.jsonl"  # a dataset that holds the first file (by its bytes) and the second (by path)
    held.write_text(json.dumps({"blob": hashlib.sha1(files[0].read_bytes()).hexdigest(), "origin": "elsewhere"})
                    + "\n" + json.dumps({"blob": "0" * 40, "origin": str(files[1])}) + "\n")
    out = tmp_path / "flags.json"
    assert source_flags.main(["--model", "default", "--provenance", str(prov), "--not-in", str(held),
                              "--condition", "clean", "jpeg75", "--by-size", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    kept = files[2:]
    assert set(result["conditions"]) == {"clean", "jpeg75"} and result["sources"] == result["conditions"]["clean"]
    assert sum(t["n"] for t in result["conditions"]["jpeg75"].values()) == len(kept)
    # jpeg75 is the detector on the JPEG bytes of each file, as an upload of a re-posted copy would be
    detector = Detector.from_dir("default")
    expected = detector.predict([source_flags.reposted(str(f), "jpeg75") for f in kept])
    flagged = sum(v.label == "ai-mimicry" for v in expected)
    assert sum(t["flagged"] * t["n"] for t in result["conditions"]["jpeg75"].values()) == pytest.approx(flagged)
    sides = {source_flags.size_bin(str(f)) for f in kept}
    assert set(result["by_size"]["clean"]) == sides
    assert sum(t["n"] for t in result["by_size"]["clean"].values()) == len(kept)


def test_evaluation_only_kinds_stay_out_of_the_default_catalogue(tmp_path, monkeypatch):
    monkeypatch.setattr(debian_art, "package_version", lambda package: "1")
    _noise(tmp_path / "train" / "a.png", seed=1)
    _noise(tmp_path / "unseen" / "b.png", seed=2)
    monkeypatch.setattr(debian_art, "CATALOGUE", (
        debian_art.Entry("trained", "p", str(tmp_path), ("train/*.png",), "kind", min_bytes=1),
        debian_art.Entry("never-seen", "q", str(tmp_path), ("unseen/*.png",), "kind", min_bytes=1,
                         evaluation_only=True)))
    out = tmp_path / "rows.jsonl"

    def sources(argv):
        assert debian_art.main(["--out", str(out), *argv]) == 0
        return {json.loads(x)["source"] for x in out.read_text().splitlines()}

    assert sources([]) == {"trained"}  # what the dataset builder trains on
    assert sources(["--sources", "never-seen"]) == {"never-seen"}
    assert sources(["--with", "never-seen"]) == {"trained", "never-seen"}  # a candidate's training data
    for wrong in (["--with", "nowhere"], ["--sources", "trained", "--with", "never-seen"]):
        with pytest.raises(SystemExit):
            debian_art.main(["--out", str(out), *wrong])


def _png_bytes(size=(96, 64), seed=0, fmt="PNG") -> bytes:
    import io

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)  # smooth enough that pHash sees the picture
    img = Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def test_works_inside_qt_resource_bundles_are_extracted_licensed_per_file_and_near_copies_share_a_group(
        tmp_path, monkeypatch):
    from tests.training.test_qt_resources import rcc

    monkeypatch.setattr(debian_art, "package_version", lambda package: "3.1-2")
    doc = tmp_path / "doc"
    (doc / "suite").mkdir(parents=True)
    (doc / "suite" / "copyright").write_text(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
        "Files: *\nCopyright: the authors\nLicense: GPL-3+\n\n"
        "Files: src/activities/explore/resource/*.jpg\nCopyright: photographers\nLicense: CC-BY-SA-3.0\n\n"
        "Files: src/activities/explore/resource/tower.jpg\nCopyright: one photographer\nLicense: CC-BY-NC-2.0\n")
    monkeypatch.setattr(debian_art, "DOC_DIR", doc)
    bundles = tmp_path / "rcc"
    bundles.mkdir()
    castle = _png_bytes((120, 90), seed=1)
    (bundles / "explore.rcc").write_bytes(rcc({
        "suite/src/activities/explore/resource/castle.webp": castle,
        "suite/src/activities/explore/resource/tower.webp": _png_bytes(seed=2),  # non-commercial: left out
        "suite/src/activities/explore/resource/bridge.webp": _png_bytes(seed=3),
        "suite/src/activities/explore/Explore.qml": b"import QtQuick",
    }))
    (bundles / "details.rcc").write_bytes(rcc({
        # The same photograph at another size in another game: near copies, so one group.
        "suite/src/activities/details/resource/castle_background.webp": _png_bytes((240, 180), seed=1),
    }))
    (bundles / "other.rcc").write_bytes(rcc({"suite/src/activities/other/resource/x.webp": _png_bytes(seed=4)}))
    entry = debian_art.Entry("suite-photos", "suite", str(bundles), ("suite/src/activities/*/resource/*.webp",),
                             "photographs", group_depth=0, min_bytes=1, dep5_prefix="suite/", near_duplicates=10,
                             resources=("explore.rcc", "details.rcc"))
    rows = debian_art.rows_for(entry, extract_dir=tmp_path / "extracted")
    by_name = {Path(r["path_in_repo"].split(":", 1)[1]).stem: r for r in rows}
    assert set(by_name) == {"castle", "bridge", "castle_background"}  # no qml, no other.rcc, no NC work
    castle_row = by_name["castle"]
    assert Path(castle_row["file"]).read_bytes() == castle  # extracted, byte for byte
    assert Path(castle_row["file"]).is_relative_to(tmp_path / "extracted" / "suite" / "3.1-2" / "explore")
    assert castle_row["path_in_repo"] == f"{bundles / 'explore.rcc'}:suite/src/activities/explore/resource/castle.webp"
    assert castle_row["blob"] == hashlib.sha1(castle).hexdigest()
    # Licences per file, matched without the extension the build changed; the catch-all for the rest.
    assert castle_row["licence"] == by_name["bridge"]["licence"] == "CC-BY-SA-3.0"
    assert by_name["castle_background"]["licence"] == "GPL-3+"
    assert by_name["castle_background"]["group"] == castle_row["group"] != by_name["bridge"]["group"]
    # A second run finds the extracted files in place and lists the same rows.
    assert debian_art.rows_for(entry, extract_dir=tmp_path / "extracted") == rows


def test_a_file_another_package_installed_in_the_same_folder_is_not_credited_to_the_entry(tmp_path, monkeypatch):
    # Wesnoth's campaign packages install their portraits under the core data package's folder: a glob over the
    # folder alone would list them as the core package's works (its version, its licence, its training source).
    monkeypatch.setattr(debian_art, "package_version", lambda package: "1")
    _noise(tmp_path / "campaigns" / "core" / "portrait.png", seed=1)
    _noise(tmp_path / "campaigns" / "extra" / "portrait.png", seed=2)
    owners = {"core-data": {str(tmp_path / "campaigns" / "core" / "portrait.png")},
              "extra-campaign": {str(tmp_path / "campaigns" / "extra" / "portrait.png")}}
    monkeypatch.setattr(debian_art, "owned_files", lambda package: frozenset(owners[package]))

    def listed(package):
        entry = debian_art.Entry("portraits", package, str(tmp_path), ("campaigns/*/*.png",), "portraits",
                                 group_depth=2, min_bytes=1)
        return {(Path(r["file"]).parent.name, r["repo"]) for r in debian_art.rows_for(entry)}

    assert listed("core-data") == {("core", "debian:core-data")}
    assert listed("extra-campaign") == {("extra", "debian:extra-campaign")}
    # Where dpkg does not know the package (a folder of files, a test), every matching file counts.
    monkeypatch.setattr(debian_art, "owned_files", lambda package: None)
    assert {name for name, _ in listed("core-data")} == {"core", "extra"}
