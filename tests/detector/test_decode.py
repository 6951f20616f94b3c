"""Safe decoding: every edge case a scan or an upload can bring, each with its error code."""

from __future__ import annotations

import io
import struct
import warnings

import numpy as np
import pytest
from PIL import Image, ImageFile

from mimicry.detector.decode import ERROR_CODES, DecodeError, decode_image

from detector_fixtures import encode, png_bomb_header, raw_png, solid


def code_of(source, **kwargs) -> str:
    with pytest.raises(DecodeError) as info:
        decode_image(source, **kwargs)
    assert info.value.code in ERROR_CODES and info.value.message
    return info.value.code


def rgb(image: Image.Image) -> np.ndarray:
    assert image.mode == "RGB"
    return np.asarray(image)


# ----------------------------------------------------------------------------- sources


def test_every_kind_of_source_gives_the_same_rgb_image(tmp_path):
    im = solid((10, 200, 30))
    data = encode(im, "PNG")
    (tmp_path / "a.png").write_bytes(data)
    for source in (tmp_path / "a.png", str(tmp_path / "a.png"), data, bytearray(data), im, np.asarray(im)):
        out = decode_image(source)
        assert out.size == (48, 32)
        assert rgb(out)[0, 0].tolist() == [10, 200, 30]


def test_grey_and_rgba_arrays_are_accepted():
    assert rgb(decode_image(np.full((4, 5), 7, np.uint8)))[0, 0].tolist() == [7, 7, 7]
    rgba = np.zeros((4, 5, 4), np.uint8)  # fully transparent black -> white page
    assert rgb(decode_image(rgba))[0, 0].tolist() == [255, 255, 255]


@pytest.mark.parametrize("arr,code", [
    (np.zeros((4, 4, 3), np.float32), "unsupported_format"),
    (np.zeros((4, 4, 2), np.uint8), "unsupported_format"),
    (np.zeros((0, 4, 3), np.uint8), "empty"),
])
def test_bad_arrays_are_refused(arr, code):
    assert code_of(arr) == code


def test_an_unknown_source_type_is_a_decode_error():
    assert code_of(12345) == "unsupported_format"


def test_a_pil_image_of_a_disallowed_format_is_refused(tmp_path):
    (tmp_path / "x.ico").write_bytes(encode(solid("red", (16, 16)), "ICO"))
    with Image.open(tmp_path / "x.ico") as im:
        assert code_of(im) == "unsupported_format"


def test_decoding_a_pil_image_does_not_return_the_callers_object():
    im = solid("red")
    assert decode_image(im) is not im


# ----------------------------------------------------------------------------- refusals


def test_missing_file_and_directory_are_not_found(tmp_path):
    assert code_of(tmp_path / "nope.png") == "not_found"
    assert code_of(tmp_path) == "not_found"


def test_zero_bytes_are_empty(tmp_path):
    (tmp_path / "zero.png").write_bytes(b"")
    assert code_of(tmp_path / "zero.png") == "empty"
    assert code_of(b"") == "empty"


def test_byte_limit_is_checked_before_reading(tmp_path):
    data = encode(solid("red"), "PNG")
    (tmp_path / "a.png").write_bytes(data)
    assert code_of(tmp_path / "a.png", max_bytes=len(data) - 1) == "too_large"
    assert code_of(data, max_bytes=len(data) - 1) == "too_large"
    decode_image(data, max_bytes=len(data))


def test_random_bytes_and_text_named_jpg_are_not_images(tmp_path):
    assert code_of(np.random.default_rng(0).bytes(2000)) == "unsupported_format"
    (tmp_path / "notes.jpg").write_text("this is a shopping list, not a picture\n")
    assert code_of(tmp_path / "notes.jpg") == "unsupported_format"


def test_eps_and_psd_are_refused_even_though_pillow_reads_them():
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto\n"
    psd = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, 10, 10, 8, 3) + b"\x00" * 64
    for data, name in ((eps, "EPS"), (psd, "PSD")):
        with pytest.raises(DecodeError, match=f"{name} is not an allowed format") as info:
            decode_image(data)
        assert info.value.code == "unsupported_format"


def test_allowed_formats_narrow_the_list():
    data = encode(solid("red"), "GIF")
    decode_image(data)
    assert code_of(data, allowed_formats=["PNG"]) == "unsupported_format"
    with pytest.raises(ValueError, match="no plugin"):
        decode_image(data, allowed_formats=["NOSUCH"])


def test_truncated_png_and_jpeg_are_corrupt_not_padded():
    rng = np.random.default_rng(0)
    noisy = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))  # incompressible
    for fmt in ("PNG", "JPEG"):
        data = encode(noisy, fmt)
        assert code_of(data[: len(data) // 2]) == "corrupt", fmt
        assert code_of(data[:12]) == "corrupt", fmt  # the signature, then nothing
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_pixel_limit_is_checked_on_the_header_before_decoding():
    # 8000 x 8000 = 64 MP: over our 40 MP default, under Pillow's own limits.
    assert code_of(png_bomb_header(8000, 8000)) == "too_many_pixels"
    # 20000 x 20000 = 400 MP: Pillow's DecompressionBombError, turned into our error.
    assert code_of(png_bomb_header(20000, 20000)) == "too_many_pixels"
    assert code_of(solid("red", (100, 100)), max_pixels=9999) == "too_many_pixels"
    assert code_of(np.zeros((100, 100, 3), np.uint8), max_pixels=9999) == "too_many_pixels"


def test_pillow_bomb_warning_is_our_error_where_warnings_are_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        # 10000 x 10000 = 100 MP: above Pillow's warning limit (89 MP), below its error limit.
        assert code_of(png_bomb_header(10000, 10000), max_pixels=10**9) == "too_many_pixels"


# ----------------------------------------------------------------------------- colour modes


def test_palette_with_transparency_goes_onto_white():
    im = Image.new("P", (4, 4), 0)
    im.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    im.putpixel((0, 0), 1)
    out = rgb(decode_image(encode(im, "PNG", transparency=0)))
    assert out[0, 0].tolist() == [0, 0, 255] and out[1, 1].tolist() == [255, 255, 255]


def test_la_and_rgba_alpha_composite_onto_white():
    la = Image.new("LA", (4, 4), (0, 0))
    la.putpixel((0, 0), (0, 255))
    out = rgb(decode_image(encode(la, "PNG")))
    assert out[0, 0].tolist() == [0, 0, 0] and out[1, 1].tolist() == [255, 255, 255]
    half = rgb(decode_image(Image.new("RGBA", (2, 2), (0, 0, 0, 128))))
    assert abs(int(half[0, 0, 0]) - 127) <= 1  # half-transparent black over white is mid-grey


def test_cmyk_jpeg_becomes_rgb():
    out = rgb(decode_image(encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95)))
    r, g, b = out[8, 8].tolist()
    assert r > 200 and g < 60 and b < 60  # red


def test_16_bit_grey_png_is_scaled_not_clipped():
    arr = np.array([[0, 257 * 100], [65535, 257 * 200]], np.uint16)
    data = encode(Image.fromarray(arr), "PNG")
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode.startswith("I")  # Pillow really gives 16-bit
    out = rgb(decode_image(data))
    assert out[:, :, 0].tolist() == [[0, 100], [255, 200]]


def test_16_bit_grey_is_brought_to_8_bits_in_about_its_own_size_of_memory():
    # Every 16-bit value maps as x / 257 truncated, bit for bit, with a few bytes a pixel of working memory
    # (numpy's allocations, traced): a float64 copy took 24 a pixel, 0.9 GB for a 40-MP file.
    import tracemalloc

    from mimicry.detector.decode import to_rgb

    values = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    assert (np.asarray(to_rgb(Image.fromarray(values)))[..., 0] == (values // 257).astype(np.uint8)).all()
    big = Image.fromarray(np.full((2000, 2500), 40000, np.uint16))  # 5 MP
    tracemalloc.start()
    try:
        out = to_rgb(big)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.getpixel((0, 0)) == (155, 155, 155)
    assert peak < 8 * 5_000_000, f"{peak / 5e6:.1f} bytes a pixel"


def test_16_bit_rgb_png_is_read():
    # Pillow cannot write 16-bit RGB, so build the file by hand: 2x1 pixels, filter byte 0.
    rows = b"\x00" + struct.pack(">6H", 65535, 0, 0, 0, 0, 257 * 50)
    out = rgb(decode_image(raw_png(2, 1, 16, 2, rows)))
    assert out[0].tolist() == [[255, 0, 0], [0, 0, 50]]


def test_one_bit_image():
    im = Image.new("1", (8, 8), 0)
    im.putpixel((0, 0), 1)
    out = rgb(decode_image(encode(im, "PNG")))
    assert out[0, 0].tolist() == [255, 255, 255] and out[1, 1].tolist() == [0, 0, 0]


def test_exif_orientation_is_applied():
    im = Image.new("RGB", (40, 20), (255, 0, 0))
    im.paste((0, 0, 255), (20, 0, 40, 20))  # left red, right blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    out = decode_image(encode(im, "JPEG", quality=95, exif=exif.tobytes()))
    assert out.size == (20, 40)
    top, bottom = rgb(out)[2, 10], rgb(out)[37, 10]
    assert top[0] > 200 and top[2] < 60  # the left edge is now at the top
    assert bottom[2] > 200 and bottom[0] < 60


def test_animated_gif_gives_its_first_frame():
    frames = [solid("red", (8, 8)), solid("blue", (8, 8))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    with Image.open(io.BytesIO(data)) as im:
        assert im.n_frames == 2
    assert rgb(decode_image(data))[4, 4].tolist() == [255, 0, 0]


def test_jpeg_draft_decodes_at_reduced_scale_but_not_below_the_target():
    big = encode(Image.new("RGB", (1024, 768), (90, 120, 150)), "JPEG")
    assert decode_image(big).size == (1024, 768)
    # 768 // 224 = 3, so the largest DCT scale keeping both sides >= 224 is 1/2.
    assert decode_image(big, draft_size=224).size == (512, 384)
    assert decode_image(big, draft_size=96).size == (128, 96)
    assert decode_image(encode(solid("red", (300, 300)), "PNG"), draft_size=32).size == (300, 300)  # JPEG only
