"""The colour and pattern thresholds of ``recommendations.matching``, measured on real photos.

    python bench/match_thresholds.py [--designs 80] [--per-handle 2]

Psychobunny designs that come in several colourways (each handle is one colourway of a design): every pair
of photos is put in one group (same handle = same colourway; same design, another colourway; another
design with the same colour name; another design and colour of the same article type; anything else) and
the share of pairs whose colour (and pattern) cosine reaches each threshold is printed. Descriptors are
made as the embedding pipeline makes a catalog photo's (the encoder's resize and crop, then
``recommendations.colour``); the last line compares them with ``matching.describe_photo``, which describes
ad creatives. Photos come from LOOKALIKE_DATA_DIR (default ../shared/data). No database is used.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import os
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings_test")
DATA_DIR = Path(os.environ.get("LOOKALIKE_DATA_DIR", ROOT.parent / "shared" / "data"))

COLOUR_THRESHOLDS = (0.50, 0.55, 0.60, 0.70, 0.80)
PATTERN_THRESHOLDS = (0.98, 0.99, 0.993)
GROUPS = (
    "same handle (same colourway)",
    "same design, another colourway",
    "another design, same colour name",
    "another design and colour, same kind",
    "another design and kind",
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--designs", type=int, default=80)
    parser.add_argument("--per-handle", type=int, default=2)
    return parser.parse_args()


def photos(designs: int, per_handle: int) -> list[dict[str, str]]:
    with open(DATA_DIR / "psychobunny" / "labels.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    seen: set[str] = set()
    by_design: dict[str, dict[str, list[dict[str, str]]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if row["md5"] not in seen:
            seen.add(row["md5"])
            by_design[row["design_code"]][row["handle"]].append(row)
    chosen = [code for code in sorted(by_design) if len(by_design[code]) >= 2][:designs]
    return [row for code in chosen for rows in by_design[code].values() for row in rows[:per_handle]]


def group_of(a: dict[str, str], b: dict[str, str]) -> str:
    if a["handle"] == b["handle"]:
        return GROUPS[0]
    if a["design_code"] == b["design_code"]:
        return GROUPS[1]
    if a["colour_name"] == b["colour_name"]:
        return GROUPS[2]
    if a["article_type"] == b["article_type"]:
        return GROUPS[3]
    return GROUPS[4]


def main() -> None:
    args = parse_args()
    import django

    django.setup()
    from PIL import Image

    from recommendations import colour, matching
    from recommendations.encoders import get_encoder
    from recommendations.recipe_encoder import batch_pixels, describe_batch

    encoder = get_encoder("efficientnet_lite0")  # only its resize, crop and normalisation are used
    mean, std = encoder.normalisation
    rows = photos(args.designs, args.per_handle)
    pipeline, creative = [], []
    for row in rows:
        path = DATA_DIR / "psychobunny" / "images" / row["image"]
        with Image.open(path) as image:
            batch = encoder.preprocess(image.convert("RGB"))[None]
        pipeline.append(describe_batch(batch_pixels(batch, mean, std))[0])
        creative.append(matching.describe_photo(path.read_bytes()))
    split = colour.COLOUR_DIMENSIONS
    colours = np.stack([d[:split] / np.linalg.norm(d[:split]) for d in pipeline])
    patterns = np.stack([d[split:] / np.linalg.norm(d[split:]) for d in pipeline])
    colour_cos, pattern_cos = colours @ colours.T, patterns @ patterns.T
    found: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in GROUPS}
    for i, j in itertools.combinations(range(len(rows)), 2):
        pair = found[group_of(rows[i], rows[j])]
        pair[0].append(float(colour_cos[i, j]))
        pair[1].append(float(pattern_cos[i, j]))
    designs = len({row["design_code"] for row in rows})
    print(f"{len(rows)} photos of {designs} designs; share of photo pairs with a cosine of at least t")
    print(f"{'colour cosine  t =':42s}" + "".join(f"{t:>7.2f}" for t in COLOUR_THRESHOLDS) + "   pairs")
    for name in GROUPS:
        values = np.asarray(found[name][0])
        shares = "".join(f"{np.mean(values >= t):>7.2f}" for t in COLOUR_THRESHOLDS)
        print(f"{name:42s}{shares}   {len(values)}")
    print(f"{'pattern cosine  t =':42s}" + "".join(f"{t:>7.3f}" for t in PATTERN_THRESHOLDS))
    for name in GROUPS:
        values = np.asarray(found[name][1])
        print(f"{name:42s}" + "".join(f"{np.mean(values >= t):>7.2f}" for t in PATTERN_THRESHOLDS))
    agreement = [matching.colour_cosine(a, b) for a, b in zip(pipeline, creative, strict=True)]
    print(
        "colour cosine, pipeline vs describe_photo (ads) on the same photo: "
        f"median {np.median(agreement):.3f}, 5th percentile {np.percentile(agreement, 5):.3f}"
    )


if __name__ == "__main__":
    main()
