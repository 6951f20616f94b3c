"""Probe: can enrolled works be recognised when re-posted, by a perceptual hash or by the style embedding?

Measured for issue 16 (copies of enrolled works must be recognised >= 99% after JPEG 75 or half size, with
almost no false copies) before building it: 300 openclipart works "enrolled", each re-encoded as JPEG 75,
halved, or cut to its central 90%, against the nearest of them for 500 other openclipart works.
imagehash's pHash (64 bits, Hamming distance) and the registry's style embedding (cosine similarity) are
compared. Needs the Debian package openclipart-png and ``pip install imagehash==4.3.2`` (not a dependency
of the project yet).

``python bench/copy_detection_probe.py``
"""
import io
import random

import imagehash
import numpy as np
from pathlib import Path
from PIL import Image
Image.MAX_IMAGE_PIXELS = None  # trusted local files; any over 4 MP is skipped below without decoding
files = sorted(Path("/usr/share/openclipart/png").rglob("*.png"))
random.Random(0).shuffle(files)
def load(p):
    im = Image.open(p)
    if im.width * im.height > 4_000_000: return None
    im.load()
    if im.mode in ("RGBA", "LA", "P"):
        im = im.convert("RGBA"); bg = Image.new("RGB", im.size, "white"); bg.paste(im, mask=im.split()[3]); return bg
    return im.convert("RGB")
def jpeg(im, q):
    b = io.BytesIO(); im.save(b, "JPEG", quality=q); return Image.open(io.BytesIO(b.getvalue())).convert("RGB")
ims = [x for x in (load(p) for p in files[:900]) if x is not None]
enrolled = ims[:300]
others = ims[300:800]
H = lambda im: imagehash.phash(im)
eh = [H(im) for im in enrolled]
same_j = [H(jpeg(im, 75)) - h for im, h in zip(enrolled, eh)]
same_h = [H(im.resize((max(1, im.width // 2), max(1, im.height // 2)), Image.Resampling.BICUBIC)) - h for im, h in zip(enrolled, eh)]
same_c = [H(im.crop((int(im.width*0.05), int(im.height*0.05), int(im.width*0.95), int(im.height*0.95)))) - h for im, h in zip(enrolled, eh)]
arr = np.array([int(str(h), 16) for h in eh], dtype=np.uint64)
def nearest(h):
    x = np.bitwise_xor(arr, np.uint64(int(str(h), 16)))
    return min(bin(int(v)).count("1") for v in x)
other_d = [nearest(H(im)) for im in others]
for name, d in (("jpeg75", same_j), ("half", same_h), ("crop90", same_c), ("non-enrolled nearest", other_d)):
    d = np.array(d); print(name, "max", d.max(), "p99", np.percentile(d, 99), "share<=8", (d <= 8).mean(), "share<=10", (d<=10).mean(), "share<=12", (d<=12).mean())

from mimicry.detector.style import StyleEncoder
enc = StyleEncoder.from_dir("models/style-encoder")
def emb(ims):
    x = np.stack([enc.prepare(im) for im in ims])
    out = np.concatenate([enc.embed_arrays(x[i:i+16]) for i in range(0, len(x), 16)])
    return out / np.linalg.norm(out, axis=1, keepdims=True)
E = emb(enrolled)
half = [im.resize((max(1, im.width // 2), max(1, im.height // 2)), Image.Resampling.BICUBIC) for im in enrolled]
for name, ims in (("jpeg75", [jpeg(im, 75) for im in enrolled]), ("half", half), ("half+jpeg75", [jpeg(im, 75) for im in half])):
    Q = emb(ims); own = (Q * E).sum(1); top = (Q @ E.T).argmax(1)
    print(name, "own sim min", own.min().round(4), "p1", np.percentile(own, 1).round(4), "top1 is own", (top == np.arange(len(E))).mean())
O = emb(others); near = (O @ E.T).max(1)
print("non-enrolled nearest sim max", near.max().round(4), "p99", np.percentile(near, 99).round(4), "p999", np.percentile(near, 99.9).round(4))
