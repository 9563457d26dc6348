"""Decoding real (and deliberately broken) image files built in the tests with Pillow."""

from __future__ import annotations

import hashlib
import io
import random
import struct
import threading
import zlib
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from PIL import Image

from recommendations.imaging import (
    PREFETCH_BATCHES,
    BadImage,
    decode_jpegs_on_gpu,
    image_info,
    is_gpu_decodable,
    iter_batches,
    iter_batches_on_gpu,
    load_image,
)


def encode(image: Image.Image, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def photo(size: tuple[int, int] = (96, 64), seed: int = 0) -> Image.Image:
    """A noisy colour picture, so JPEG files have real entropy-coded data to truncate."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels, mode="RGB")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height in its IHDR but carries almost no pixel data."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def assert_close_rgb(actual: tuple[int, ...], expected: tuple[int, int, int], tolerance: int = 40) -> None:
    assert all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True)), (actual, expected)


# --- load_image: what must fail ------------------------------------------------------------------------


def test_zero_bytes_is_bad_image():
    with pytest.raises(BadImage) as caught:
        load_image(b"")
    assert caught.value.reason == "empty file"


def test_random_bytes_are_bad_image():
    with pytest.raises(BadImage, match="not an image"):
        load_image(random.Random(0).randbytes(4000))


def test_truncated_jpeg_is_bad_image():
    data = encode(photo((256, 256)), "JPEG", quality=90)
    with pytest.raises(BadImage, match="truncated"):
        load_image(data[: len(data) // 2])


def test_format_outside_the_allowed_list_is_refused():
    # PPM is a valid image that Pillow reads, but no shop serves it; the allow-list keeps exotic decoders
    # (EPS runs Ghostscript) away from untrusted files.
    with pytest.raises(BadImage, match="not an image"):
        load_image(encode(photo(), "PPM"))


def test_huge_declared_size_is_refused_with_its_size():
    data = png_header_only(20_000, 20_000)
    assert len(data) < 1000
    with pytest.raises(BadImage) as caught:
        load_image(data)
    assert "too large" in caught.value.reason
    assert "400000000" in caught.value.reason.replace(",", "")


def test_decompression_bomb_is_refused_before_decoding():
    # 8000 x 8000 = 64 M pixels: under Pillow's own limit, over ours (50 M). A real file of a few kB.
    bomb = encode(Image.new("1", (8000, 8000)), "PNG")
    assert len(bomb) < 100_000
    with pytest.raises(BadImage, match=r"too large: 8000x8000"):
        load_image(bomb)
    # The same size with no pixel data at all: refused for its size, so no decoding was attempted.
    with pytest.raises(BadImage, match=r"too large: 8000x8000"):
        load_image(png_header_only(8000, 8000))


def test_max_pixels_is_the_callers_limit():
    data = encode(photo((100, 100)), "PNG")
    with pytest.raises(BadImage, match="more than the 5,000 allowed"):
        load_image(data, max_pixels=5000)
    assert load_image(data, max_pixels=10_000).size == (100, 100)


def test_corrupted_files_raise_only_bad_image():
    valid_files = [encode(photo(seed=1), "JPEG"), encode(photo(seed=2), "PNG"), encode(photo(seed=3), "WEBP")]
    rng = random.Random(0)
    outcomes = {"decoded": 0, "refused": 0}
    for data in valid_files:
        for _ in range(40):
            damaged = bytearray(data)
            for _ in range(rng.randint(1, 8)):
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
            damaged = damaged[: rng.randint(len(damaged) // 3, len(damaged))]
            try:
                image = load_image(bytes(damaged))
            except BadImage as error:
                assert error.reason
                outcomes["refused"] += 1
            else:
                assert image.mode == "RGB"
                outcomes["decoded"] += 1
    assert outcomes["refused"] > 0


# --- load_image: what must succeed ---------------------------------------------------------------------


def test_cmyk_jpeg_becomes_rgb():
    red_in_cmyk = Image.new("CMYK", (64, 48), (0, 255, 255, 0))
    image = load_image(encode(red_in_cmyk, "JPEG"))
    assert image.mode == "RGB"
    assert image.size == (64, 48)
    assert_close_rgb(image.getpixel((32, 24)), (255, 0, 0))


def test_16_bit_png_is_scaled_to_8_bit_not_clipped():
    levels = np.array([[0, 32896, 65535]], dtype=np.uint16).repeat(4, axis=0)
    data = encode(Image.fromarray(levels), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    image = load_image(data)
    assert image.mode == "RGB"
    assert [image.getpixel((x, 0)) for x in range(3)] == [(0, 0, 0), (128, 128, 128), (255, 255, 255)]


def test_palette_png_with_transparency_is_composited_on_white():
    palette_image = Image.new("P", (20, 10), 0)
    palette_image.putpalette([0, 0, 0, 255, 0, 0] + [0, 0, 0] * 254)
    palette_image.paste(1, (10, 0, 20, 10))  # right half red, left half colour 0 = transparent black
    image = load_image(encode(palette_image, "PNG", transparency=0))
    assert image.mode == "RGB"
    assert image.getpixel((2, 5)) == (255, 255, 255)
    assert image.getpixel((15, 5)) == (255, 0, 0)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_channel_is_composited_on_white(mode):
    pixels = Image.new("RGBA", (20, 10), (0, 0, 255, 255))
    pixels.paste((0, 0, 0, 0), (0, 0, 10, 10))
    image = load_image(encode(pixels.convert(mode), "PNG"))
    assert image.mode == "RGB"
    assert image.getpixel((2, 5)) == (255, 255, 255)
    assert image.getpixel((15, 5)) != (255, 255, 255)


@pytest.mark.parametrize("image_format", ["GIF", "WEBP"])
def test_animated_image_gives_its_first_frame(image_format):
    frames = [Image.new("RGB", (32, 32), colour) for colour in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    data = encode(frames[0], image_format, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    image = load_image(data)
    assert image.mode == "RGB"
    assert_close_rgb(image.getpixel((16, 16)), (255, 0, 0))


def test_exif_orientation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, displayed rotated 90 degrees clockwise
    image = load_image(encode(photo((80, 40)), "JPEG", exif=exif))
    assert image.size == (40, 80)


def test_large_jpeg_is_decoded_at_a_reduced_scale():
    data = encode(photo((2000, 1600)), "JPEG", quality=80)
    image = load_image(data, target_px=256)
    assert image.mode == "RGB"
    assert min(image.size) >= 256
    assert image.size == (500, 400)  # DCT scaling 1/4: the largest reduction that keeps 256 px


def test_grayscale_and_rgb_images_load_as_rgb():
    for image_format, mode in [("JPEG", "L"), ("PNG", "1"), ("BMP", "RGB"), ("TIFF", "RGB")]:
        image = load_image(encode(photo().convert(mode), image_format))
        assert image.mode == "RGB"
        assert image.size == (96, 64)


# --- image_info ----------------------------------------------------------------------------------------


def test_image_info_reads_the_header():
    data = encode(photo((120, 90)), "JPEG")
    info = image_info(data)
    assert (info.width, info.height, info.format, info.mime_type) == (120, 90, "JPEG", "image/jpeg")
    assert info.sha256 == hashlib.sha256(data).hexdigest()


def test_image_info_does_not_decode_pixels():
    info = image_info(png_header_only(9000, 7000))  # no pixel data behind the header
    assert (info.width, info.height, info.mime_type) == (9000, 7000, "image/png")


@pytest.mark.parametrize("data", [b"", b"<html>not found</html>", png_header_only(20_000, 20_000)])
def test_image_info_raises_bad_image(data):
    with pytest.raises(BadImage):
        image_info(data)


# --- iter_batches --------------------------------------------------------------------------------------


def solid_png(value: int) -> bytes:
    return encode(Image.new("RGB", (12, 12), (value, 255 - value, 7)), "PNG")


def red_channel(image: Image.Image) -> torch.Tensor:
    """A tiny preprocess: a 1x2x2 tensor of the red channel, so a row can be traced back to its image."""
    return torch.from_numpy(np.asarray(image.resize((2, 2)))[:, :, 0].copy()).float().unsqueeze(0)


@pytest.mark.parametrize("workers", [0, 3])
def test_iter_batches_keeps_order_and_reports_failures(workers):
    bad = {3: b"", 4: b"GIF89a broken", 9: encode(photo((256, 256)), "JPEG")[:300]}
    items = [(f"image-{index}", bad.get(index, solid_png(index * 10))) for index in range(11)]
    batches = list(iter_batches(items, preprocess=red_channel, batch_size=4, workers=workers))

    assert len(batches) == 3
    assert batches[0].keys == ["image-0", "image-1", "image-2"]
    assert [key for key, _ in batches[0].failures] == ["image-3"]
    assert batches[1].keys == ["image-5", "image-6", "image-7"]
    assert [key for key, _ in batches[1].failures] == ["image-4"]
    assert batches[2].keys == ["image-8", "image-10"]
    reasons = dict(failure for batch in batches for failure in batch.failures)
    assert reasons["image-3"] == "empty file"
    assert "truncated" in reasons["image-9"]
    assert all(reasons.values())
    for batch in batches:
        assert batch.tensor is not None
        assert batch.tensor.shape == (len(batch.keys), 1, 2, 2)
        red_values = [int(key.split("-")[1]) * 10 for key in batch.keys]
        assert batch.tensor[:, 0, 0, 0].tolist() == red_values


def test_iter_batches_all_failed_batch_has_no_tensor():
    items = [("a", b""), ("b", b"junk"), ("c", solid_png(5))]
    batches = list(iter_batches(items, preprocess=red_channel, batch_size=2, workers=2))
    assert batches[0].tensor is None
    assert batches[0].keys == []
    assert [key for key, _ in batches[0].failures] == ["a", "b"]
    assert batches[1].keys == ["c"]


def test_iter_batches_reports_a_preprocess_error_as_a_failure():
    def fussy(image: Image.Image) -> torch.Tensor:
        if image.getpixel((0, 0))[0] == 20:
            raise ValueError("unexpected colour")
        return red_channel(image)

    items = [(index, solid_png(index * 10)) for index in range(4)]
    (batch,) = iter_batches(items, preprocess=fussy, batch_size=4, workers=2)
    assert batch.keys == [0, 1, 3]
    assert batch.failures == [(2, "preprocessing failed (ValueError: unexpected colour)")]


def test_iter_batches_decodes_in_worker_threads():
    decoding_threads: set[str] = set()

    def recording(image: Image.Image) -> torch.Tensor:
        decoding_threads.add(threading.current_thread().name)
        return red_channel(image)

    items = [(index, solid_png(index)) for index in range(12)]
    list(iter_batches(items, preprocess=recording, batch_size=3, workers=2))
    assert decoding_threads and all(name.startswith("decode") for name in decoding_threads)

    decoding_threads.clear()
    list(iter_batches(items, preprocess=recording, batch_size=3, workers=0))
    assert decoding_threads == {threading.current_thread().name}


def test_iter_batches_reads_its_input_lazily():
    pulled = 0

    def endless() -> Iterator[tuple[int, bytes]]:
        nonlocal pulled
        data = solid_png(1)
        while True:
            pulled += 1
            yield pulled, data

    batches = iter_batches(endless(), preprocess=red_channel, batch_size=5, workers=2)
    first = next(batches)
    assert first.keys == [1, 2, 3, 4, 5]
    # The current batch plus the prefetched ones, not the whole (endless) stream.
    assert pulled <= 5 * (PREFETCH_BATCHES + 1) + 1
    batches.close()


# --- GPU decoding: the CPU-side decision -----------------------------------------------------------------


def test_is_gpu_decodable_accepts_baseline_colour_jpeg_only():
    exif = Image.Exif()
    exif[0x0112] = 1
    assert is_gpu_decodable(encode(photo(), "JPEG"))
    assert is_gpu_decodable(
        encode(photo(), "JPEG", exif=exif, icc_profile=b"\0" * 2000)
    )  # APP segments first
    assert not is_gpu_decodable(encode(photo(), "JPEG", progressive=True))
    assert not is_gpu_decodable(encode(photo().convert("L"), "JPEG"))
    assert not is_gpu_decodable(encode(photo().convert("CMYK"), "JPEG"))
    assert not is_gpu_decodable(encode(photo(), "PNG"))
    assert not is_gpu_decodable(encode(photo(), "WEBP"))
    assert not is_gpu_decodable(b"")
    assert not is_gpu_decodable(encode(photo(), "JPEG")[:20])


def test_decode_jpegs_on_gpu_leaves_other_formats_to_the_cpu():
    # Nothing here is GPU-decodable, so no device is touched and this runs anywhere.
    datas = [encode(photo(), "PNG"), encode(photo(), "JPEG", progressive=True), b""]
    assert decode_jpegs_on_gpu(datas, "cuda") == [None, None, None]


def test_oversized_jpegs_are_not_sent_to_the_gpu():
    small, large = encode(photo((40, 30)), "JPEG"), encode(photo((200, 100)), "JPEG")
    # The CPU device runs the same torchvision batch decoder: the selection logic is what is tested.
    decoded = decode_jpegs_on_gpu([small, large], "cpu", max_pixels=10_000)
    assert decoded[0] is not None and tuple(decoded[0].shape) == (3, 30, 40)
    assert decoded[1] is None  # left to load_image(), which refuses it with a reason


def test_iter_batches_on_gpu_matches_the_cpu_pipeline():
    """The GPU pipeline's logic, run on the CPU device: same keys, failures and (nearly) the same tensors."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms._presets import ImageClassification

    preprocess = ImageClassification(crop_size=56, resize_size=64, interpolation=InterpolationMode.BILINEAR)
    items = [
        ("baseline-a", encode(photo((96, 64), seed=1), "JPEG", quality=95)),
        ("png", encode(photo((80, 80), seed=2), "PNG")),
        ("baseline-b", encode(photo((96, 64), seed=3), "JPEG", quality=95)),  # same size: one resize call
        ("broken", b"\xff\xd8\xff\xe0 not really a jpeg"),
        ("progressive", encode(photo((70, 90), seed=4), "JPEG", progressive=True, quality=95)),
        ("baseline-c", encode(photo((120, 60), seed=5), "JPEG", quality=95)),
    ]
    on_device = list(iter_batches_on_gpu(items, preprocess=preprocess, batch_size=4, workers=2, device="cpu"))
    on_cpu = list(iter_batches(items, preprocess=preprocess, batch_size=4, workers=2))

    assert [batch.keys for batch in on_device] == [batch.keys for batch in on_cpu]
    assert [batch.keys for batch in on_device] == [
        ["baseline-a", "png", "baseline-b"],
        ["progressive", "baseline-c"],
    ]
    assert [key for batch in on_device for key, _ in batch.failures] == ["broken"]
    for device_batch, cpu_batch in zip(on_device, on_cpu, strict=True):
        assert device_batch.tensor.shape == cpu_batch.tensor.shape
        # Tensor and PIL resizing round differently; a mix-up of images would be far off.
        assert (device_batch.tensor - cpu_batch.tensor).abs().mean() < 0.05


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA for nvJPEG")
def test_decode_jpegs_on_gpu_matches_cpu_decoding():
    datas = [encode(photo(seed=seed), "JPEG", quality=95) for seed in range(3)]
    datas.insert(1, encode(photo(), "PNG"))
    decoded = decode_jpegs_on_gpu(datas, "cuda")
    assert decoded[1] is None
    for data, tensor in zip(datas, decoded, strict=True):
        if tensor is None:
            continue
        assert tensor.device.type == "cuda"
        reference = torch.from_numpy(np.asarray(load_image(data))).permute(2, 0, 1)
        difference = (tensor.cpu().int() - reference.int()).abs().float().mean()
        assert difference < 3  # IDCT implementations differ by a level or two
