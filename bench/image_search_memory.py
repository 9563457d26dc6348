"""Memory per image-search request: decoding, preprocessing and the forward pass, above the loaded model.

    python bench/image_search_memory.py [--encoder efficientnet_lite0] [--concurrent 8]

Each case runs in a fresh process: the encoder is built and warmed up on a small photo, the peak resident
memory is reset (``/proc/self/clear_refs``), then one request's work runs, and the case reports the peak
above the memory before it (``VmHWM - VmRSS``). The baseline is the decode this project used before, in the
same run: the whole image decoded (JPEGs without DCT scaling) and converted at full size. "current" is
``services.embed_query_image``'s path with the image-search settings: JPEGs decoded at 1/2-1/8 scale, other
formats refused past ``IMAGE_SEARCH_MAX_DECODE_PIXELS`` and reduced before any conversion.

The last two cases run ``--concurrent`` searches of a 4K (8.3 Mpx) RGBA PNG at once in threads of one
process (``MALLOC_ARENA_MAX=1``), without and with the ``IMAGE_SEARCH_CONCURRENCY`` slots (2, counted in
Valkey).

Linux only (reads /proc). Needs the embedded Valkey (or REDIS_URL) for the slot case.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CASES = {
    # name: (format, width, height, mode, path)
    "png-6300-baseline": ("PNG", 6300, 6300, "RGB", "baseline"),
    "png-6300-current": ("PNG", 6300, 6300, "RGB", "current"),
    "png-rgba-4k-baseline": ("PNG", 3840, 2160, "RGBA", "baseline"),
    "png-rgba-4k-current": ("PNG", 3840, 2160, "RGBA", "current"),
    "jpeg-6300-baseline": ("JPEG", 6300, 6300, "RGB", "baseline"),
    "jpeg-6300-current": ("JPEG", 6300, 6300, "RGB", "current"),
    "jpeg-1024-current": ("JPEG", 1024, 768, "RGB", "current"),
}


def make_image(fmt: str, width: int, height: int, mode: str) -> bytes:
    """A photo-sized image that compresses well (the attack: a 131 KB PNG of 6300 x 6300)."""
    from PIL import Image, ImageDraw

    image = Image.new(mode, (width, height), (230, 230, 225, 255)[: len(mode)])
    draw = ImageDraw.Draw(image)
    for i in range(0, min(width, height) // 2, max(1, min(width, height) // 40)):
        draw.rectangle([i, i, width - i, height - i], outline=(40 + i % 200, 90, 160, 200)[: len(mode)])
    buffer = io.BytesIO()
    image.save(buffer, fmt, **({"quality": 90} if fmt == "JPEG" else {"optimize": True}))
    return buffer.getvalue()


def proc_status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings_test")
    import django

    django.setup()


def baseline_load(data: bytes):
    """The decode before this change: every format decoded whole and converted at full size."""
    from PIL import Image

    from recommendations import imaging

    image = Image.open(io.BytesIO(data), formats=imaging.ALLOWED_FORMATS)
    image.load()
    imaging._apply_exif_orientation(image)
    return imaging._to_rgb(image)


def current_load(data: bytes):
    from recommendations import imaging
    from recommendations.conf import app_setting

    return imaging.load_image(
        data,
        max_pixels=int(app_setting("IMAGE_SEARCH_MAX_PIXELS")),
        max_decode_pixels=int(app_setting("IMAGE_SEARCH_MAX_DECODE_PIXELS")),
    )


def run_case(name: str, encoder_key: str) -> dict:
    import torch

    torch.set_num_threads(1)
    setup_django()
    from recommendations import imaging
    from recommendations.encoders import build_encoder

    encoder = build_encoder(encoder_key, weights="DEFAULT", device="cpu")
    encoder.embed([current_load(make_image("JPEG", 640, 480, "RGB"))])  # warm: allocator pools, kernels
    fmt, width, height, mode, path = CASES[name]
    data = make_image(fmt, width, height, mode)
    load = baseline_load if path == "baseline" else current_load
    before_kb = proc_status_kb("VmRSS")
    reset_peak()
    started = time.perf_counter()
    outcome = "embedded"
    try:
        encoder.embed([load(data)])
    except imaging.ImageTooLarge:
        outcome = "refused (413)"
    seconds = time.perf_counter() - started
    peak_kb = proc_status_kb("VmHWM")
    return {
        "case": name,
        "file_kb": round(len(data) / 1024),
        "pixels": f"{width}x{height} {mode}",
        "outcome": outcome,
        "extra_mb": round((peak_kb - before_kb) / 1024, 1),
        "seconds": round(seconds, 2),
    }


def run_concurrent(capped: bool, encoder_key: str, concurrent: int) -> dict:
    import torch

    torch.set_num_threads(1)
    setup_django()
    from recommendations.conf import app_setting
    from recommendations.encoders import build_encoder
    from recommendations.ratelimit import concurrency_slot

    encoder = build_encoder(encoder_key, weights="DEFAULT", device="cpu")
    encoder.embed([current_load(make_image("JPEG", 640, 480, "RGB"))])
    data = make_image("PNG", 3840, 2160, "RGBA")
    slots = int(app_setting("IMAGE_SEARCH_CONCURRENCY"))

    def search() -> None:
        if capped:
            with concurrency_slot("bench-image-search", slots=slots, lease_s=60, wait_s=120):
                encoder.embed([current_load(data)])
        else:
            encoder.embed([current_load(data)])

    threads = [threading.Thread(target=search) for _ in range(concurrent)]
    before_kb = proc_status_kb("VmRSS")
    reset_peak()
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {
        "case": f"{concurrent} at once, {'slots ' + str(slots) if capped else 'no cap'}",
        "file_kb": round(len(data) / 1024),
        "pixels": "3840x2160 RGBA",
        "outcome": "embedded",
        "extra_mb": round((proc_status_kb("VmHWM") - before_kb) / 1024, 1),
        "seconds": round(time.perf_counter() - started, 2),
    }


def in_subprocess(args: list[str], **env: str) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **env},
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--encoder", default="efficientnet_lite0")
    parser.add_argument("--concurrent", type=int, default=8)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--concurrent-case", choices=["capped", "uncapped"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.encoder)))
        return
    if args.concurrent_case:
        print(json.dumps(run_concurrent(args.concurrent_case == "capped", args.encoder, args.concurrent)))
        return

    from bench._common import print_hardware

    print_hardware()
    rows = [in_subprocess(["--case", name, "--encoder", args.encoder]) for name in CASES]
    # One malloc arena: glibc otherwise keeps each thread's freed buffers in that thread's own arena, and the
    # peak would count memory no longer in use (a sync gunicorn worker has a single thread anyway).
    rows += [
        in_subprocess(
            ["--concurrent-case", kind, "--encoder", args.encoder, "--concurrent", str(args.concurrent)],
            MALLOC_ARENA_MAX="1",
        )
        for kind in ("uncapped", "capped")
    ]
    by_case = {row["case"]: row for row in rows}
    print(f"\nencoder: {args.encoder}; memory above the loaded, warmed-up model (peak RSS)\n")
    print("| case | file | image | outcome | extra memory (MB) | vs baseline | time (s) |")
    print("|---|---:|---|---|---:|---:|---:|")
    for row in rows:
        baseline = by_case.get(row["case"].replace("-current", "-baseline"))
        ratio = (
            f"{row['extra_mb'] / baseline['extra_mb']:.3f}x"
            if baseline and row is not baseline and baseline["extra_mb"] > 0
            else ""
        )
        print(
            f"| {row['case']} | {row['file_kb']} KB | {row['pixels']} | {row['outcome']} | "
            f"{row['extra_mb']:.1f} | {ratio} | {row['seconds']:.2f} |"
        )
    uncapped, capped = rows[-2], rows[-1]
    if uncapped["extra_mb"] > 0:
        print(
            f"\nconcurrent searches, slots vs no cap: {capped['extra_mb'] / uncapped['extra_mb']:.3f}x memory"
        )


if __name__ == "__main__":
    main()
