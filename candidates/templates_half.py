"""Half of the ComfyUI templates' generators for training, the other half never seen: does a few dozen images of
other generators teach a detector anything about yet other generators?

Generators are grouped by maker (a FLUX.2 never on both sides, nor Nano Banana, GPT Image or Seedream versions),
each maker sent to half A or B by a hash of its name. Writes data/package_ai-half-a.jsonl (provenance rows to add
to a dataset: `make realworld-dataset EXTRA_PROVENANCE=data/package_ai-half-a.jsonl`) and data/package_ai-half-b.jsonl
(the never-seen half, to score). Usage, from the repository root, after `make package-ai`:

    .venv/bin/python candidates/templates_half.py
"""

import hashlib
import json
from pathlib import Path

MAKERS = {  # generator (as the templates index names it) -> maker; a generator not named is its own maker
    "Gemini-2.5-Flash / Nano Banana / Google": "google", "Nano Banana 2": "google", "Nano Banana": "google",
    "GPT Image 2": "openai", "GPT Image 2.5": "openai", "GPT-Image-1 / OpenAI": "openai",
    "FLUX / FLUX.2 Dev": "flux", "Chroma / FLUX": "flux", "FLUX / FLUX.2 Klein": "flux", "FLUX 3 Image": "flux",
    "FLUX.2 / FLUX": "flux", "FLUX.2 Dev / FLUX": "flux",
    "Seedream 5.0": "bytedance", "Seedream 5.0 Pro": "bytedance", "ByteDance / Seedream 4.0": "bytedance",
    "Qwen Image 2.1": "alibaba", "Qwen Image 3.0 Pro": "alibaba", "Qwen / Qwen-Image": "alibaba",
    "Qwen-Image 2512": "alibaba", "Z-Image": "alibaba", "Z-Image-Turbo": "alibaba", "Ovis-Image": "alibaba",
    "SD3.5 / Stability": "stability", "SDXL": "stability", "SDXL / Stability": "stability",
    "Grok": "xai", "Grok Imagine Image 2.0": "xai",
    "Kling / Kling 3.0": "kling", "Kling O1": "kling", "Kling O3": "kling",
    "Krea 2": "krea", "Krea 3": "krea",
}


def maker(generator: str) -> str:
    return MAKERS.get(generator, generator)


def half(generator: str) -> str:
    return "a" if hashlib.sha1(maker(generator).lower().encode()).digest()[0] % 2 == 0 else "b"


def main() -> None:
    rows = [json.loads(line) for line in Path("data/package_ai.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r["source"] == "comfyui-templates" and r["family"] == "never trained on"]
    for side in "ab":
        kept = [r for r in rows if half(r["generator"]) == side]
        Path(f"data/package_ai-half-{side}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
        print(side, len(kept), "images,", len({r["generator"] for r in kept}), "generators:",
              sorted({maker(r["generator"]) for r in kept}))


if __name__ == "__main__":
    main()
