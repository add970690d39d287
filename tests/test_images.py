"""Hostile image files: every one is a per-file ImageError, decoded within bounded memory."""

from __future__ import annotations

import functools
import io
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faltung.images import MAX_PIXELS, ImageError, is_dark_on_light, load_image

Image = pytest.importorskip("PIL.Image")


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_declaring(width: int, height: int, colour_type: int = 0, rows: int = 4) -> bytes:
    """A valid PNG of ``rows`` black rows (all of them: a decompression bomb) of a huge image."""
    channels = {0: 1, 2: 3, 6: 4}[colour_type]
    packer, row = zlib.compressobj(9), b"\0" * (width * channels + 1)
    data = b"".join(packer.compress(row) for _ in range(min(rows, height))) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


def encoded(fmt: str, mode: str = "L", size=(28, 28), **options) -> bytes:
    rng = np.random.default_rng(0)
    picture = Image.fromarray(rng.integers(0, 256, (*size[::-1], 3), dtype=np.uint8)).convert(mode)
    buffer = io.BytesIO()
    picture.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def with_size(data: bytes, fmt: str, width: int, height: int) -> bytes:
    """``data`` with its header's dimensions rewritten, the pixel data left as it is."""
    blob = bytearray(data)
    if fmt == "GIF":
        struct.pack_into("<HH", blob, 6, width, height)
        descriptor = blob.index(b"\x2c", 13)
        struct.pack_into("<HH", blob, descriptor + 5, width, height)
    elif fmt == "BMP":
        struct.pack_into("<ii", blob, 18, width, height)
    elif fmt == "JPEG":
        sof = blob.index(b"\xff\xc0")
        struct.pack_into(">HH", blob, sof + 5, height, width)
    return bytes(blob)


@functools.cache
def bombs() -> dict[str, bytes]:
    return {
        "png-10-gigapixel.png": png_declaring(100_000, 100_000),
        # 6000x6000 RGBA, complete: 144 MB once decoded, from 140 kB of file
        "png-rgba-6000.png": png_declaring(6000, 6000, colour_type=6, rows=6000),
        "gif-65535.gif": with_size(encoded("GIF", "P"), "GIF", 65535, 65535),
        "bmp-8000.bmp": with_size(encoded("BMP", "RGB"), "BMP", 8000, 8000),
        "jpeg-65000.jpg": with_size(encoded("JPEG", "RGB"), "JPEG", 65000, 65000),
    }


BOMB_NAMES = ["bmp-8000.bmp", "gif-65535.gif", "jpeg-65000.jpg", "png-10-gigapixel.png",
              "png-rgba-6000.png"]  # fmt: skip


@pytest.mark.parametrize("name", BOMB_NAMES)
@pytest.mark.parametrize("resize", [False, True])
def test_huge_declared_sizes_are_refused_before_decoding(tmp_path, name, resize):
    path = tmp_path / name
    path.write_bytes(bombs()[name])
    with pytest.raises(ImageError, match=f"{name}: (image is|not a readable image)"):
        load_image(path, resize=resize)


def test_bombs_keep_memory_bounded(tmp_path):
    """In a fresh process, so that the peak resident size measures these files alone."""
    assert sorted(bombs()) == BOMB_NAMES
    for name, data in bombs().items():
        (tmp_path / name).write_bytes(data)
    script = """
import resource, sys
import numpy as np, PIL.Image
from faltung.images import ImageError, load_image
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for path in sys.argv[1:]:
    for resize in (False, True):
        try:
            load_image(path, resize=resize)
        except ImageError:
            pass
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""
    paths = [str(tmp_path / name) for name in BOMB_NAMES]
    result = subprocess.run(
        [sys.executable, "-c", script, *paths], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    grown_kib = int(result.stdout)
    assert grown_kib < 32 * 1024, f"peak memory grew by {grown_kib / 1024:.0f} MiB"


def test_the_pixel_cap_admits_large_photos_with_resize(tmp_path):
    Image.new("L", (3000, 2000), 255).save(tmp_path / "photo.png")
    assert 3000 * 2000 <= MAX_PIXELS
    assert load_image(tmp_path / "photo.png", resize=True).shape == (1, 28, 28)


MODES = [
    ("PNG", "1"), ("PNG", "L"), ("PNG", "P"), ("PNG", "RGB"), ("PNG", "RGBA"), ("PNG", "LA"),
    ("PNG", "I;16"), ("GIF", "P"), ("BMP", "1"), ("BMP", "P"), ("BMP", "RGB"),
    ("JPEG", "L"), ("JPEG", "RGB"), ("JPEG", "CMYK"), ("TIFF", "CMYK"), ("TIFF", "F"),
    ("TIFF", "I;16"), ("TIFF", "I"), ("TIFF", "YCbCr"), ("TIFF", "LAB"), ("WEBP", "RGBA"), ("PPM", "RGB"),
]  # fmt: skip


@pytest.mark.parametrize("fmt,mode", MODES, ids=[f"{f}-{m}" for f, m in MODES])
def test_unusual_modes_read_as_grey_in_0_1_or_fail_cleanly(tmp_path, fmt, mode):
    try:
        data = encoded(fmt, mode)
    except (OSError, ValueError, KeyError):
        pytest.skip(f"this Pillow cannot write {mode} as {fmt}")
    path = tmp_path / f"x.{fmt.lower()}"
    path.write_bytes(data)
    try:
        image = load_image(path)
    except ImageError as error:
        assert str(error).startswith(f"{path}: ")
        return
    assert image.shape == (1, 28, 28) and image.dtype == np.float32
    assert 0 <= image.min() and image.max() <= 1


def test_palette_with_a_transparent_entry_is_background(tmp_path):
    picture = Image.new("P", (28, 28), 1)
    picture.putpalette([255, 255, 255] * 2 + [0, 0, 0] * 254)
    picture.info["transparency"] = 1
    picture.save(tmp_path / "clear.png", transparency=1)
    assert load_image(tmp_path / "clear.png").max() == 0


SAMPLES = {
    name: encoded(fmt, mode)
    for name, fmt, mode in [
        ("png", "PNG", "L"), ("rgba.png", "PNG", "RGBA"), ("gif", "GIF", "P"),
        ("bmp", "BMP", "RGB"), ("jpg", "JPEG", "RGB"), ("tif", "TIFF", "L"),
        ("webp", "WEBP", "RGB"),
    ]
}  # fmt: skip


def check_one(path) -> None:
    try:
        image = load_image(path, resize=True)
    except ImageError as error:
        assert str(error).startswith(f"{path}: ")
        return
    assert image.shape == (1, 28, 28) and image.dtype == np.float32
    assert np.all(np.isfinite(image)) and 0 <= image.min() and image.max() <= 1


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.sampled_from(sorted(SAMPLES)), st.data())
def test_mutated_and_truncated_images_are_per_file_errors(tmp_path, name, data):
    blob = bytearray(SAMPLES[name])
    for _ in range(data.draw(st.integers(0, 6))):
        position = data.draw(st.integers(0, len(blob) - 1))
        blob[position] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        blob = blob[: data.draw(st.integers(0, len(blob)))]
    path = tmp_path / f"fuzz.{name}"
    path.write_bytes(bytes(blob))
    check_one(path)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.sampled_from([b"\x89PNG\r\n\x1a\n", b"GIF89a", b"BM", b"\xff\xd8\xff", b"II*\x00", b""]),
    st.binary(max_size=200),
)
def test_random_bytes_behind_a_real_signature(tmp_path, signature, rest):
    path = tmp_path / "random.png"
    path.write_bytes(signature + rest)
    check_one(path)


def test_hostile_npy_headers(tmp_path):
    header = b"{'descr': '<f8', 'fortran_order': False, 'shape': (100000, 100000), }"
    header += b" " * (118 - len(header)) + b"\n"
    (tmp_path / "huge.npy").write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", 118) + header)
    with pytest.raises(ImageError, match="huge.npy"):
        load_image(tmp_path / "huge.npy", resize=True)
    np.save(tmp_path / "empty.npy", np.zeros((0, 28)))
    with pytest.raises(ImageError, match="no pixels|expected one grey image"):
        load_image(tmp_path / "empty.npy", resize=True)
    np.save(tmp_path / "objects.npy", np.array([None, 1], dtype=object), allow_pickle=True)
    with pytest.raises(ImageError, match="not a readable .npy array"):
        load_image(tmp_path / "objects.npy")


def test_polarity_detection():
    light_on_dark = np.zeros((28, 28))
    light_on_dark[6:22, 12:16] = 1
    assert not is_dark_on_light(light_on_dark)
    assert is_dark_on_light(1 - light_on_dark)
    assert not is_dark_on_light(np.ones((28, 28)))  # blank paper: nothing to invert for
    paper = np.full((28, 28), 0.7)  # a grey photo of paper with a darker stroke
    paper[6:22, 12:16] = 0.2
    assert is_dark_on_light(paper)


def pictures():
    """(id, Pillow image) in the modes people's files come in, 32x24 so that both paths
    resize them; the 16-bit ones dark (at most 255) and bright."""
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    rgba = np.dstack([rgb, rng.integers(0, 256, (24, 32), dtype=np.uint8)])
    dark16 = rng.integers(0, 256, (24, 32)).astype(np.uint16)
    bright16 = rng.integers(0, 65536, (24, 32)).astype(np.uint16)
    transparent = Image.fromarray(bright16)
    transparent.info["transparency"] = int(bright16[0, 0])  # one level marks transparency
    return [
        ("L", Image.fromarray(rgb[..., 0])),
        ("I16-transparent", transparent),
        ("RGB", Image.fromarray(rgb)),
        ("RGBA", Image.fromarray(rgba)),
        ("P", Image.fromarray(rgb).convert("P")),
        ("I16-dark", Image.fromarray(dark16)),
        ("I16-bright", Image.fromarray(bright16)),
    ]


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize(("kind", "picture"), pictures(), ids=[k for k, _ in pictures()])
def test_predict_reads_a_file_as_training_reads_its_folder(tmp_path, kind, picture, channels):
    from faltung.datasets.folder import load_folder

    (tmp_path / "data" / "a").mkdir(parents=True)
    picture.save(tmp_path / "data" / "a" / "x.png")
    trained = load_folder(tmp_path / "data", channels, (28, 28), tmp_path / "cache").images[0]
    predicted = load_image(tmp_path / "data" / "a" / "x.png", (28, 28), True, channels=channels)
    np.testing.assert_array_equal(predicted, trained / np.float32(255))
    if kind == "I16-dark":  # 16-bit values of at most 255 are dark, not full range
        assert predicted.max() < 0.01
    if kind.startswith("I16-"):  # scaled by the full range, not clipped to 8 bits (white)
        assert predicted.mean() < 0.6


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_a_photo_stored_on_its_side_is_read_upright(tmp_path, orientation):
    """EXIF orientation 3, 6 and 8 (turned 180, 90 and 270 degrees): training and predict
    both see the picture as a viewer shows it, not as its pixels are stored."""
    from faltung.datasets.folder import load_folder

    upright = np.zeros((30, 20), np.uint8)
    upright[:5] = 255  # a bright top edge
    turns = {3: 2, 6: 1, 8: 3}[orientation]  # stored turned back by this many quarters
    exif = Image.Exif()
    exif[0x0112] = orientation
    (tmp_path / "data" / "a").mkdir(parents=True)
    path = tmp_path / "data" / "a" / "photo.png"
    Image.fromarray(np.ascontiguousarray(np.rot90(upright, turns))).save(path, exif=exif.tobytes())
    trained = load_folder(tmp_path / "data", 1, None, tmp_path / "cache").images[0, 0]
    predicted = load_image(path, (30, 20), False, channels=1)[0]
    np.testing.assert_array_equal(trained, upright)
    np.testing.assert_array_equal(predicted, upright / np.float32(255))


@pytest.mark.parametrize("shape", [(6, 8), (1, 6, 8), (6, 8, 1)])
def test_a_grey_npy_array_for_a_colour_model_reads_as_a_grey_picture_does(tmp_path, shape):
    grey = np.random.default_rng(0).integers(0, 256, (6, 8), dtype=np.uint8)
    np.save(tmp_path / "g.npy", grey.reshape(shape))
    Image.fromarray(grey).save(tmp_path / "g.png")
    from_array = load_image(tmp_path / "g.npy", (6, 8), channels=3)
    np.testing.assert_array_equal(from_array, load_image(tmp_path / "g.png", (6, 8), channels=3))
    assert from_array.shape == (3, 6, 8)


@pytest.mark.parametrize("layout", ["chw", "hwc"])
def test_a_colour_npy_array_is_one_image_of_the_models_channels(tmp_path, layout):
    image = np.random.default_rng(0).integers(0, 256, (3, 6, 8), dtype=np.uint8)
    np.save(tmp_path / "c.npy", image if layout == "chw" else image.transpose(1, 2, 0))
    got = load_image(tmp_path / "c.npy", (6, 8), channels=3)
    np.testing.assert_array_equal(got, image / np.float32(255))
    assert load_image(tmp_path / "c.npy", (3, 4), resize=True, channels=3).shape == (3, 3, 4)
    with pytest.raises(ImageError, match=r"expected one image \(2, H, W\) or \(H, W, 2\)"):
        load_image(tmp_path / "c.npy", (6, 8), channels=2)


def test_npy_integers_are_8_bit_levels_as_in_training_arrays(tmp_path):
    """predict reads an .npy array as training reads an .npz: any integer type holding
    0..255, the same pixels whatever the type."""
    levels = np.random.default_rng(0).integers(0, 256, (28, 28))
    expected = levels[None].astype(np.float32) / np.float32(255)
    for dtype in (np.uint8, np.uint16, np.int64):
        np.save(tmp_path / "d.npy", levels.astype(dtype))
        np.testing.assert_array_equal(load_image(tmp_path / "d.npy"), expected)
    for shape in ((28, 28, 1), (1, 1, 28, 28)):  # (H, W, 1); a batch of one
        np.save(tmp_path / "d.npy", levels.astype(np.uint8).reshape(shape))
        np.testing.assert_array_equal(load_image(tmp_path / "d.npy"), expected)
    np.save(tmp_path / "d.npy", (levels * 257).astype(np.uint16))
    with pytest.raises(ImageError, match="integer arrays hold levels 0..255"):
        load_image(tmp_path / "d.npy")
    np.save(tmp_path / "d.npy", levels.astype(np.uint8)[:, None, :])  # (28, 1, 28)
    with pytest.raises(ImageError, match=r"expected one grey image .* got shape \(28, 1, 28\)"):
        load_image(tmp_path / "d.npy")
