"""The file helpers (``qfm_iqm.io``): the one image reader (every Pillow mode to 8-bit RGB, EXIF orientation,
oversized and bad files) and atomic writes, which never delete what a user owns."""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import write_image
from PIL import Image

from qfm_iqm.io import InputError, atomic_path, read_rgb, to_rgb8, write_csv


def _rgb(img: Image.Image) -> np.ndarray:
    """The pixels of a reader result, checked to be 8-bit RGB."""
    assert img.mode == "RGB"
    return np.asarray(img)


def _grey_row(img: Image.Image) -> list[int]:
    """The single row of a grey result (R == G == B checked)."""
    a = _rgb(img)
    assert (a == a[..., :1]).all()
    return a[0, :, 0].tolist()


def _saved(path: Path, img: Image.Image, mode: str | None = None) -> Path:
    """Save ``img`` at ``path`` and check that Pillow opens it again in ``mode`` (default: the image's mode)."""
    img.save(path)
    with Image.open(path) as back:
        assert back.mode == (mode or img.mode)
    return path


def test_16_bit_grey_png_is_scaled_by_the_16_bit_range(tmp_path: Path) -> None:
    values = np.concatenate([np.arange(0, 65536, 257), [1, 32768, 65534]])  # 0, 257, ..., 65535 -> 0..255
    path = _saved(tmp_path / "g16.png", Image.fromarray(values[None].astype(np.uint16)), "I;16")
    assert _grey_row(read_rgb(path)) == [*range(256), 0, 128, 255]


@pytest.mark.parametrize("mode, dtype", [("I;16", "<u2"), ("I;16L", "<u2"), ("I;16B", ">u2"), ("I;16N", "=u2")])
def test_every_16_bit_mode_is_scaled_alike(mode: str, dtype: str) -> None:
    img = Image.frombytes(mode, (3, 1), np.array([0, 32768, 65535], dtype=dtype).tobytes())
    assert _grey_row(to_rgb8(img)) == [0, 128, 255]


def test_16_bit_big_endian_tiff(tmp_path: Path) -> None:
    path = _saved(tmp_path / "g16b.tif", Image.fromarray(np.array([[0, 32768, 65535]], dtype=">u2")), "I;16B")
    assert _grey_row(read_rgb(path)) == [0, 128, 255]


@pytest.mark.parametrize("values, expected", [
    ([0, 7, 200, 255], [0, 7, 200, 255]),  # 8-bit data: as is
    ([0, 257, 32768, 65535], [0, 1, 128, 255]),  # 16-bit data: / 65535
    ([0, 65536, 2**31 - 1], [0, 0, 127]),  # beyond 16 bits: / (2**32 - 1)
    ([-100, 0, 100], [0, 128, 255]),  # negative: min..max
    ([-5, -5], [0, 0]),  # negative and constant
], ids=["8bit", "16bit", "32bit", "negative", "constant"])
def test_32_bit_integer_tiff_is_scaled_by_the_smallest_range_that_holds_it(
        tmp_path: Path, values: list[int], expected: list[int]) -> None:
    path = _saved(tmp_path / "i.tif", Image.fromarray(np.array([values], dtype=np.int32)), "I")
    assert _grey_row(read_rgb(path)) == expected


@pytest.mark.parametrize("values, expected", [
    ([0.0, 0.5, 1.0], [0, 128, 255]),  # within [0, 1]: * 255
    ([0.25, 0.25], [64, 64]),
    ([-3.0, 1.0, 5.0], [0, 128, 255]),  # any other range: min..max
    ([7.0, 7.0], [0, 0]),  # constant outside [0, 1]
], ids=["unit", "unit-constant", "other-range", "constant"])
def test_float_tiff_is_scaled_to_8_bit(tmp_path: Path, values: list[float], expected: list[int]) -> None:
    path = _saved(tmp_path / "f.tif", Image.fromarray(np.array([values], dtype=np.float32)), "F")
    assert _grey_row(read_rgb(path)) == expected


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_float_tiff_with_non_finite_values_names_the_file(tmp_path: Path, bad: float) -> None:
    path = _saved(tmp_path / "nonfinite.tif", Image.fromarray(np.array([[0.0, bad, 1.0]], dtype=np.float32)))
    with pytest.raises(InputError) as err:
        read_rgb(path)
    assert str(err.value) == f"corrupt or unreadable image: {path} (non-finite pixel values)"


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    img = Image.new("RGB", (48, 32), (128, 128, 128))
    img.paste((255, 0, 0), (0, 0, 16, 16))  # marks the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise
    path = tmp_path / "rotated.jpg"
    img.save(path, exif=exif, quality=95)
    out = read_rgb(path)
    assert out.size == (32, 48)
    a = _rgb(out).astype(int)
    assert np.abs(a[4, -5] - [255, 0, 0]).max() < 10  # top-left went to top-right
    assert np.abs(a[4, 4] - [128, 128, 128]).max() < 10


def _palette(transparency: int | bytes | None) -> Image.Image:
    """A 2x1 palette image: red (index 0), then blue (index 1)."""
    img = Image.new("P", (2, 1))
    img.putpalette([255, 0, 0, 0, 0, 255])
    img.putpixel((1, 0), 1)
    if transparency is not None:
        img.info["transparency"] = transparency
    return img


def _lab(rgb_lab: tuple[int, int, int]) -> Image.Image:
    return Image.new("LAB", (2, 1), rgb_lab)


# name, image saved there, mode it opens in, expected RGB of pixel (0, 0), tolerance
COLOURS: list[tuple[str, Callable[[], Image.Image], str, tuple[int, int, int], int]] = [
    ("palette.png", lambda: _palette(None), "P", (255, 0, 0), 0),
    ("palette-index-transparency.png", lambda: _palette(0), "P", (255, 0, 0), 0),
    ("palette-alpha-transparency.png", lambda: _palette(bytes([255, 128])), "P", (255, 0, 0), 0),
    ("l.png", lambda: Image.new("L", (2, 1), 77), "L", (77, 77, 77), 0),
    ("la.png", lambda: Image.new("LA", (2, 1), (100, 50)), "LA", (100, 100, 100), 0),
    ("rgba.png", lambda: Image.new("RGBA", (2, 1), (10, 20, 30, 40)), "RGBA", (10, 20, 30), 0),
    ("pa.tif", lambda: _palette(None).convert("PA"), "PA", (255, 0, 0), 0),
    ("bilevel.png", lambda: Image.new("1", (2, 1), 1), "1", (255, 255, 255), 0),
    ("cmyk.tif", lambda: Image.new("CMYK", (2, 1), (0, 255, 255, 0)), "CMYK", (255, 0, 0), 0),
    ("cmyk.jpg", lambda: Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "CMYK", (255, 0, 0), 3),
    ("ycbcr.tif", lambda: Image.new("RGB", (2, 1), (255, 0, 0)).convert("YCbCr"), "YCbCr", (255, 0, 0), 2),
    # Lab stored as L * 255 / 100 and a, b offset by 128 (D50): sRGB red is Lab (54.29, 80.81, 69.89)
    ("lab-red.tif", lambda: _lab((138, 209, 198)), "LAB", (255, 0, 0), 6),
    ("lab-white.tif", lambda: _lab((255, 128, 128)), "LAB", (255, 255, 255), 2),
    ("lab-grey.tif", lambda: _lab((136, 128, 128)), "LAB", (128, 128, 128), 2),  # L = 53.39
]


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("name, make, mode, expected, tol", COLOURS, ids=[c[0] for c in COLOURS])
def test_every_colour_mode_becomes_rgb(tmp_path: Path, name: str, make: Callable[[], Image.Image], mode: str,
                                       expected: tuple[int, int, int], tol: int) -> None:
    out = read_rgb(_saved(tmp_path / name, make(), mode))
    assert np.abs(_rgb(out)[0, 0].astype(int) - expected).max() <= tol
    assert "transparency" not in out.info  # dropped, or a later PNG save would make that colour transparent


@pytest.mark.filterwarnings("error")
def test_semi_transparent_palette_entry_keeps_its_colour(tmp_path: Path) -> None:
    path = _saved(tmp_path / "p.png", _palette(bytes([255, 128])))
    assert _rgb(read_rgb(path)).tolist() == [[[255, 0, 0], [0, 0, 255]]]


@pytest.mark.parametrize("img, expected", [
    (Image.new("HSV", (1, 1), (0, 255, 255)), (255, 0, 0)),  # hue 0 degrees
    (Image.new("HSV", (1, 1), (170, 255, 255)), (0, 0, 255)),  # hue 240 degrees
    (Image.new("HSV", (1, 1), (0, 0, 128)), (128, 128, 128)),
    (Image.new("La", (1, 1), (100, 128)), (199, 199, 199)),  # premultiplied: 100 / (128 / 255)
    (Image.new("RGBa", (1, 1), (100, 50, 20, 128)), (199, 99, 39)),
    (Image.new("PA", (1, 1), (0, 0)), (0, 0, 0)),
], ids=["hsv-red", "hsv-blue", "hsv-grey", "La", "RGBa", "PA"])
def test_modes_pillow_cannot_save_map_to_rgb(img: Image.Image, expected: tuple[int, int, int]) -> None:
    assert _rgb(to_rgb8(img))[0, 0].tolist() == list(expected)


def test_plain_rgb_jpeg_is_unchanged(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "plain.jpg"
    Image.fromarray(rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)).save(path)
    with Image.open(path) as img:
        assert np.array_equal(_rgb(read_rgb(path)), np.asarray(img.convert("RGB")))


def _png_declaring(path: Path, width: int, height: int) -> Path:
    """A tiny 8-bit grey PNG whose header declares ``width`` x ``height`` (its pixel data is not there)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("width, height", [
    (20000, 10000),  # above twice the limit: Pillow raises
    pytest.param(10000, 10000, marks=pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning"),
                 id="10000-10000-warns"),  # between once and twice: Pillow only warns
    pytest.param(10000, 10000, marks=pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning"),
                 id="10000-10000-warning-is-error"),
])
def test_decompression_bomb_is_refused_with_its_size(tmp_path: Path, width: int, height: int) -> None:
    path = _png_declaring(tmp_path / "bomb.png", width, height)
    with pytest.raises(InputError) as err:
        read_rgb(path)
    limit = Image.MAX_IMAGE_PIXELS / 1e6
    assert str(err.value) == f"image too large: {path} ({width * height / 1e6:.1f} Mpx; the limit is {limit:.1f} Mpx)"


def test_missing_file_keeps_its_message(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        read_rgb(tmp_path / "gone.png")
    assert str(err.value) == f"image not found: {tmp_path / 'gone.png'}"


def test_corrupt_and_truncated_files_keep_their_message_on_one_line(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"not an image\n at all")
    truncated = tmp_path / "truncated.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:2000])
    for path in (corrupt, truncated):
        with pytest.raises(InputError) as err:
            read_rgb(path)
        message = str(err.value)
        assert message.startswith(f"corrupt or unreadable image: {path} (") and message.endswith(")")
        assert "\n" not in message


def test_corrupt_and_missing_images_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(write_image(tmp_path / "ok.jpg").read_bytes()[:200])
    with pytest.raises(InputError, match=r"corrupt or unreadable image: .*bad.jpg"):
        read_rgb(bad)
    with pytest.raises(InputError, match=r"image not found: .*gone.png"):
        read_rgb(tmp_path / "gone.png")


def test_a_folder_where_a_file_goes_is_refused_and_kept(tmp_path: Path) -> None:
    folder = tmp_path / "out.csv"
    (folder / "part-0000").parent.mkdir()
    (folder / "part-0000").write_text("spark output")
    with pytest.raises(InputError, match=f"{folder} is a folder: a file cannot be written there"):
        write_csv(pd.DataFrame({"a": [1]}), folder)
    assert (folder / "part-0000").read_text() == "spark output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]  # no temporary left


def test_folders_replace_folders_but_never_files(tmp_path: Path) -> None:
    target = tmp_path / "model"
    for content in ("first", "second"):
        with atomic_path(target, folder=True) as tmp:
            tmp.mkdir()
            (tmp / "f.txt").write_text(content)
    assert (target / "f.txt").read_text() == "second" and sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    (tmp_path / "file").write_text("mine")
    with pytest.raises(InputError, match="is a file: a folder cannot be written there"), \
            atomic_path(tmp_path / "file", folder=True) as tmp:
        tmp.mkdir()
    assert (tmp_path / "file").read_text() == "mine"


def float_rgb_tiff(path: Path, height: int = 4, width: int = 5) -> Path:
    """An uncompressed little-endian TIFF of float32 RGB pixels, a layout Pillow cannot identify."""
    data = np.random.default_rng(0).random((height, width, 3), dtype=np.float32).tobytes()
    tags = [(256, 1, width), (257, 1, height), (258, 3, "bits"), (259, 1, 1), (262, 1, 2), (273, 1, "data"),
            (277, 1, 3), (278, 1, height), (279, 1, len(data)), (339, 3, "format")]
    extra = 8 + 2 + 12 * len(tags) + 4  # after the header and the one directory
    at = {"bits": extra, "format": extra + 6, "data": extra + 12}
    out = b"II*\x00" + struct.pack("<IH", 8, len(tags))
    for tag, count, value in tags:
        kind = 4 if tag in (273, 279) else 3  # LONG offsets and byte counts, SHORT the rest
        value = at.get(value, value) if isinstance(value, str) else value
        out += struct.pack("<HHI", tag, kind, count) + struct.pack("<HH" if kind == 3 and count == 1 else "<I",
                                                                   *((value, 0) if kind == 3 and count == 1 else (value,)))
    path.write_bytes(out + struct.pack("<I3H3H", 0, 32, 32, 32, 3, 3, 3) + data)
    return path


@pytest.mark.parametrize("make, named", [
    (lambda p: p.with_suffix(".heic").write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64))
     and p.with_suffix(".heic"), ("is HEIC, which this Pillow does not decode (convert it to JPEG or PNG, or install "
                                  "pillow-heif)")),
    (lambda p: float_rgb_tiff(p.with_suffix(".tif")), ("is a TIFF that Pillow cannot identify: a layout it does not "
                                                      "decode, such as float RGB")),
])
def test_a_format_pillow_does_not_decode_is_named_unsupported_not_corrupt(tmp_path: Path, make, named: str) -> None:
    path = make(tmp_path / "photo")
    with pytest.raises(InputError, match=rf"^unsupported image format: {re.escape(str(path))} {re.escape(named)}"):
        read_rgb(path)


def test_a_truncated_tiff_is_still_corrupt(tmp_path: Path) -> None:
    path = _saved(tmp_path / "t.tif", Image.new("RGB", (64, 64), (9, 9, 9)))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(InputError, match=r"^corrupt or unreadable image: "):
        read_rgb(path)
