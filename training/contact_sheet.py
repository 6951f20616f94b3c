"""Contact sheets: a grid of images with a caption per row, written as one PNG."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw


def contact_sheet(
    rows: list[tuple[str, list[Path | Image.Image]]], out: Path, cell: int = 128, label_width: int = 170
) -> Path:
    """Lay out ``rows`` of (label, images) as a grid with the label at the left of each row."""
    ncols = max((len(images) for _, images in rows), default=1)
    sheet = Image.new("RGB", (label_width + ncols * (cell + 4), len(rows) * (cell + 4)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (label, images) in enumerate(rows):
        y = r * (cell + 4)
        draw.multiline_text((4, y + 4), _wrap(label, 22), fill="black")
        for c, img in enumerate(images):
            im = img if isinstance(img, Image.Image) else Image.open(img)
            im = im.convert("RGB").resize((cell, cell), Image.Resampling.LANCZOS)
            sheet.paste(im, (label_width + c * (cell + 4), y + 2))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, optimize=True)
    return out


def _wrap(text: str, width: int) -> str:
    words, lines, line = text.split(), [], ""
    for w in words:
        if line and len(line) + 1 + len(w) > width:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}".strip()
    return "\n".join(lines + [line])
