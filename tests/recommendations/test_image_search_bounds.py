"""Image search bounds its work per request: PNG, WebP and GIF are decoded whole, so past
IMAGE_SEARCH_MAX_DECODE_PIXELS they are refused before decoding (JPEGs are decoded at a reduced size);
decoded images are reduced before any conversion; a machine runs IMAGE_SEARCH_CONCURRENCY searches at once."""

from __future__ import annotations

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from recommendations import imaging
from recommendations.models import EmbeddingSpace
from recommendations.ratelimit import Busy, concurrency_slot


def encoded(fmt: str, size: tuple[int, int], mode: str = "RGB", colour=(200, 40, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, colour).save(buffer, fmt)
    return buffer.getvalue()


def search(client, data: bytes, name: str):
    return client.post("/api/search/by-image/", {"image": SimpleUploadedFile(name, data)})


@pytest.fixture
def active_space(db):
    return EmbeddingSpace.objects.create(
        encoder="efficientnet_lite0", weights_id="t", dimensions=4, state="active"
    )


def test_a_small_png_of_huge_dimensions_is_refused_before_decoding(client, active_space):
    bomb = encoded("PNG", (6300, 6300))  # about 130 KB on disk, 160 MB decoded
    assert len(bomb) < 200_000

    response = search(client, bomb, "photo.png")

    assert response.status_code == 413
    assert (
        "6300x6300" in response.json()["detail"]
        and "JPEGs are decoded at a reduced size" in (response.json()["detail"])
    )


def test_a_jpeg_of_the_same_size_is_decoded_at_a_reduced_size():
    image = imaging.load_image(encoded("JPEG", (6300, 6300)), max_decode_pixels=8_500_000)

    assert image.size == (788, 788)  # 1/8 scale: never decoded whole


def test_large_transparent_pngs_are_reduced_then_put_on_white():
    data = encoded("PNG", (3000, 2000), mode="RGBA", colour=(0, 0, 0, 0))

    image = imaging.load_image(data, max_decode_pixels=8_500_000)

    assert image.mode == "RGB" and image.size == (1000, 666)
    assert image.getpixel((500, 300)) == (255, 255, 255)


def test_searches_past_the_machines_slots_wait_then_get_503(client, active_space, settings):
    settings.RECOMMENDATIONS = {
        **settings.RECOMMENDATIONS,
        "IMAGE_SEARCH_CONCURRENCY": 1,
        "IMAGE_SEARCH_QUEUE_S": 0,
    }
    with concurrency_slot("image-search", slots=1, lease_s=30, wait_s=0):
        with pytest.raises(Busy), concurrency_slot("image-search", slots=1, lease_s=30, wait_s=0):
            pass
        response = search(client, encoded("JPEG", (64, 64)), "photo.jpg")
    assert response.status_code == 503 and response["Retry-After"] == "5"
