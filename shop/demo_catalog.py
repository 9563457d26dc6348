"""A deterministic demo catalog: fictional products with drawn product photos.

The project may not ship third-party photos, so the demo store draws its own with Pillow. Each product is a
simple object (a cushion, a mug, a lamp...) in one of ten named colours and five patterns, photographed on a
light studio background with a soft shadow. Every category has its own silhouette family, so which products
look alike is obvious to a person and to a CNN encoder. Some designs come in two or three colourways, and
products have one to three photos of the same object from slightly different angles.

Everything derives from ``seed``: the same seed gives the same records and byte-identical JPEG files on the
same Pillow build. Images are drawn lazily by ``DemoImage.draw`` so building the records costs nothing.

Command line: ``python -m shop.demo_catalog OUTPUT_DIR`` writes the photos and a ``catalog.csv``.
"""

from __future__ import annotations

import argparse
import csv
import functools
import io
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

Point = tuple[float, float]
RGB = tuple[int, int, int]

DEMO_PRODUCT_URL = "https://demo.lookalike.example/products/{external_id}/"
CATALOG_CSV_NAME = "catalog.csv"
CSV_COLUMNS = (
    "external_id",
    "title",
    "description",
    "category",
    "brand",
    "price",
    "currency",
    "in_stock",
    "image_urls",
    "url",
    # Columns an importer does not know end up in the product's attributes.
    "colour",
    "pattern",
    "shape",
)
OUT_OF_STOCK_SHARE = 0.15
JPEG_QUALITY = 88

COLOURS: dict[str, RGB] = {
    "crimson": (196, 30, 58),
    "tangerine": (242, 133, 34),
    "mustard": (222, 175, 38),
    "emerald": (24, 146, 92),
    "sky blue": (92, 166, 224),
    "navy": (31, 52, 112),
    "plum": (118, 44, 110),
    "pink": (236, 120, 168),
    "charcoal": (62, 64, 70),
    "chocolate": (112, 70, 42),
}
PATTERNS = ("solid", "stripes", "dots", "checks", "gradient")
_PATTERN_ADJECTIVES = {
    "solid": "",
    "stripes": "striped",
    "dots": "polka-dot",
    "checks": "checked",
    "gradient": "ombre",
}
# Light studio backdrops: warm white, cool grey, linen, mint, blush.
_BACKGROUNDS: tuple[RGB, ...] = (
    (246, 244, 240),
    (237, 239, 243),
    (244, 238, 229),
    (235, 242, 237),
    (243, 236, 238),
)
_OFF_WHITE: RGB = (248, 246, 240)
_INK: RGB = (40, 40, 44)


@dataclass(frozen=True)
class _Category:
    key: str
    path: tuple[str, ...]
    nouns: dict[str, str]  # shape attribute -> noun used in titles
    price_eur: tuple[int, int]
    brands: tuple[str, ...]
    accents: dict[str, RGB]  # neutral materials for frames, bases, handles
    description: str


_CATEGORIES: tuple[_Category, ...] = (
    _Category(
        "tops",
        ("Clothing", "Tops"),
        {"t-shirt": "T-shirt", "tank top": "tank top", "long-sleeve": "long-sleeve top"},
        (15, 45),
        ("Loomwell", "Tidemark Goods"),
        {"self": (0, 0, 0)},
        "{Noun} in organic cotton jersey with {pattern_phrase}. Relaxed fit and a ribbed neckline.",
    ),
    _Category(
        "cushions",
        ("Home", "Cushions"),
        {"square": "square cushion", "round": "round cushion", "lumbar": "lumbar cushion"},
        (19, 59),
        ("Hollow Pine", "Loomwell"),
        {"self": (0, 0, 0)},
        "{Noun} with {pattern_phrase}. Washed cotton cover with a hidden zip and a recycled-fibre insert.",
    ),
    _Category(
        "mugs",
        ("Kitchen", "Mugs"),
        {"classic": "mug", "tall": "tall mug", "espresso": "espresso cup"},
        (8, 22),
        ("Kiln & Co", "Hollow Pine"),
        {"self": (0, 0, 0)},
        "Stoneware {noun} glazed with {pattern_phrase}. Dishwasher and microwave safe.",
    ),
    _Category(
        "posters",
        ("Art", "Posters"),
        {
            "circle": "circle poster",
            "triangle": "triangle poster",
            "star": "star poster",
            "hexagon": "hexagon poster",
        },
        (12, 49),
        ("Paper Harbour", "Atelier Brume"),
        {"black": (34, 34, 38), "oak": (176, 136, 92), "white": (252, 252, 250), "silver": (168, 170, 175)},
        "Geometric art print: a bold {shape} filled with {pattern_phrase}. Matte paper in a {accent} frame.",
    ),
    _Category(
        "lamps",
        ("Home", "Lamps"),
        {"drum": "drum table lamp", "globe": "globe table lamp", "pendant": "cone pendant lamp"},
        (39, 179),
        ("Fjordlight", "Atelier Brume"),
        {"brass": (190, 152, 82), "black": (38, 38, 42), "chrome": (176, 180, 186)},
        "{Noun} with a shade in {pattern_phrase} and {accent} fittings. E27 socket, 2 m fabric cord.",
    ),
    _Category(
        "bags",
        ("Accessories", "Bags"),
        {"tote": "tote bag", "backpack": "backpack", "crossbody": "crossbody bag"},
        (24, 129),
        ("Tidemark Goods", "Bramblewick"),
        {"tan": (168, 116, 72), "black": (36, 36, 40), "natural": (222, 207, 178)},
        "{Noun} in recycled canvas with {pattern_phrase} and {accent} straps. Inner zip pocket.",
    ),
    _Category(
        "clocks",
        ("Home", "Clocks"),
        {"round": "round wall clock", "square": "square wall clock", "hexagon": "hexagon wall clock"},
        (19, 89),
        ("Bramblewick", "Fjordlight"),
        {"black": (34, 34, 38), "brass": (186, 148, 78)},
        "{Noun} with a frame in {pattern_phrase}, an off-white dial and {accent} hands. Silent movement.",
    ),
    _Category(
        "vases",
        ("Home", "Vases"),
        {"bottle": "bottle vase", "round": "round vase", "cylinder": "cylinder vase"},
        (15, 79),
        ("Kiln & Co", "Paper Harbour"),
        {"self": (0, 0, 0)},
        "Hand-glazed ceramic {noun} with {pattern_phrase}. Watertight and fired twice.",
    ),
)
CATEGORY_PATHS: tuple[tuple[str, ...], ...] = tuple(category.path for category in _CATEGORIES)
_CATEGORY_BY_KEY = {category.key: category for category in _CATEGORIES}


@dataclass(frozen=True)
class _Design:
    """What colourways of one product share: everything but the colour."""

    category: str
    shape: str
    pattern: str
    brand: str
    accent: str
    aspect: tuple[float, float]  # width and height factors, so two designs of a shape are not identical
    pattern_angle_deg: float
    pattern_period: float  # object units
    detail: float  # 0..1, a shape-specific free parameter (clock time, collar depth...)
    background: RGB  # colourways are shot in the same setting, so only the colour tells them apart


@dataclass(frozen=True)
class _View:
    """Where the object sits in one photo; extra photos shift, rotate and scale it a little."""

    dx: float
    dy: float
    angle_deg: float
    scale: float
    background: RGB


@dataclass(frozen=True)
class DemoImageSpec:
    """Everything needed to draw one photo; hashable and picklable, so the drawing can run anywhere."""

    design: _Design
    colour: str
    view: _View
    image_px: int


@dataclass(frozen=True)
class DemoImage:
    filename: str
    draw: Callable[[], bytes] = field(repr=False, compare=False)  # JPEG bytes, drawn on each call
    spec: DemoImageSpec


@dataclass
class DemoProduct:
    external_id: str
    title: str
    description: str
    category_path: list[str]
    brand: str
    price: Decimal
    currency: str
    in_stock: bool
    attributes: dict[str, str]  # colour, pattern, shape
    images: list[DemoImage]
    design_id: str  # products sharing it are colourways of the same design
    url: str


# ---------------------------------------------------------------------------------------------------------
# Catalog records


def generate_demo_catalog(*, n_products: int = 360, seed: int = 7, image_px: int = 384) -> list[DemoProduct]:
    """Fictional products spread evenly over the demo categories, in a shuffled but seed-stable order."""
    if n_products < 1:
        raise ValueError(f"n_products must be at least 1, got {n_products}")
    if image_px < 32:
        raise ValueError(f"image_px must be at least 32, got {image_px}")
    rng = random.Random(f"lookalike-demo:{seed}")
    drafts: list[tuple[_Design, str, str]] = []  # design, colour, design_id
    per_category, extra = divmod(n_products, len(_CATEGORIES))
    for index, category in enumerate(_CATEGORIES):
        quota = per_category + (1 if index < extra else 0)
        drafts.extend(_draft_category(category, quota, rng))
    rng.shuffle(drafts)
    out_of_stock = set(rng.sample(range(n_products), round(n_products * OUT_OF_STOCK_SHARE)))

    prices: dict[str, Decimal] = {}  # colourways of one design cost the same
    products = []
    for number, (design, colour, design_id) in enumerate(drafts, start=1):
        category = _CATEGORY_BY_KEY[design.category]
        external_id = f"demo-{number:04d}"
        if design_id not in prices:
            prices[design_id] = _price(category, rng)
        products.append(
            DemoProduct(
                external_id=external_id,
                title=_title(category, design, colour),
                description=_description(category, design, colour),
                category_path=list(category.path),
                brand=design.brand,
                price=prices[design_id],
                currency="EUR",
                in_stock=number - 1 not in out_of_stock,
                attributes={"colour": colour, "pattern": design.pattern, "shape": design.shape},
                images=_images(external_id, design, colour, image_px, rng),
                design_id=design_id,
                url=DEMO_PRODUCT_URL.format(external_id=external_id),
            )
        )
    return products


def _draft_category(category: _Category, quota: int, rng: random.Random) -> list[tuple[_Design, str, str]]:
    drafts: list[tuple[_Design, str, str]] = []
    used: set[tuple[str, str, str]] = set()  # (shape, pattern, colour): no two products look the same
    design_number = 0
    while len(drafts) < quota:
        shape = rng.choice(sorted(category.nouns))
        pattern = rng.choice(PATTERNS)
        free = [c for c in COLOURS if (shape, pattern, c) not in used]
        if not free:
            if len(used) == len(category.nouns) * len(PATTERNS) * len(COLOURS):
                used.clear()  # more products than distinct looks: start repeating
            continue
        colourways = min(rng.choices((1, 2, 3), weights=(70, 20, 10))[0], quota - len(drafts), len(free))
        design_number += 1
        design = _Design(
            category=category.key,
            shape=shape,
            pattern=pattern,
            brand=rng.choice(category.brands),
            accent=rng.choice(sorted(category.accents)),
            aspect=(round(rng.uniform(0.92, 1.06), 3), round(rng.uniform(0.94, 1.04), 3)),
            pattern_angle_deg=0.0 if category.key == "tops" else rng.choice((0.0, 0.0, 90.0, 45.0)),
            pattern_period=round(rng.uniform(0.16, 0.26), 3),
            detail=round(rng.random(), 3),
            background=rng.choice(_BACKGROUNDS),
        )
        for colour in rng.sample(free, colourways):
            used.add((shape, pattern, colour))
            drafts.append((design, colour, f"{category.key}-{design_number:03d}"))
    return drafts


def _title(category: _Category, design: _Design, colour: str) -> str:
    words = [colour.capitalize(), _PATTERN_ADJECTIVES[design.pattern], category.nouns[design.shape]]
    return " ".join(word for word in words if word)


def _pattern_phrase(colour: str, pattern: str) -> str:
    return {
        "solid": f"a solid {colour} finish",
        "stripes": f"{colour} stripes",
        "dots": f"{colour} polka dots",
        "checks": f"a {colour} gingham check",
        "gradient": f"a {colour} ombre fade",
    }[pattern]


def _description(category: _Category, design: _Design, colour: str) -> str:
    noun = category.nouns[design.shape]
    return category.description.format(
        Noun=noun[0].upper() + noun[1:],
        noun=noun,
        shape=design.shape,
        accent=design.accent,
        pattern_phrase=_pattern_phrase(colour, design.pattern),
    )


def _price(category: _Category, rng: random.Random) -> Decimal:
    low, high = category.price_eur
    cents = rng.choices(("99", "90", "50", "00"), weights=(5, 2, 1, 2))[0]
    return Decimal(f"{rng.randint(low, high - 1)}.{cents}")


def _images(
    external_id: str, design: _Design, colour: str, image_px: int, rng: random.Random
) -> list[DemoImage]:
    views = [_View(0.0, 0.0, 0.0, 1.0, design.background)]
    for _ in range(rng.choices((0, 1, 2), weights=(35, 40, 25))[0]):
        red, green, blue = rng.choice(_BACKGROUNDS)
        shade = rng.randint(-14, 6)  # another moment, another light: the backdrop is a touch different
        views.append(
            _View(
                dx=round(rng.uniform(-0.08, 0.08), 3),
                dy=round(rng.uniform(-0.06, 0.06), 3),
                angle_deg=round(rng.choice((-1, 1)) * rng.uniform(4.0, 11.0), 2),
                scale=round(rng.uniform(0.84, 1.06), 3),
                background=(min(255, red + shade), min(255, green + shade), min(255, blue + shade)),
            )
        )
    images = []
    for number, view in enumerate(views, start=1):
        spec = DemoImageSpec(design=design, colour=colour, view=view, image_px=image_px)
        images.append(
            DemoImage(f"{external_id}-{number}.jpg", functools.partial(render_demo_jpeg, spec), spec)
        )
    return images


# ---------------------------------------------------------------------------------------------------------
# Writing a CSV + folder import


def write_demo_catalog(
    directory: Path, products: Sequence[DemoProduct], *, category_separator: str = " > "
) -> Path:
    """Write every product photo as a JPEG into ``directory`` plus ``catalog.csv``; return the CSV path.

    ``image_urls`` lists file names relative to the CSV, separated by ``|``; serve the folder and import the
    CSV with that address as its base URL.
    """
    directory.mkdir(parents=True, exist_ok=True)
    csv_path = directory / CATALOG_CSV_NAME
    with csv_path.open("w", newline="", encoding="utf-8") as csv_file:
        writer = csv.DictWriter(csv_file, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for product in products:
            for image in product.images:
                (directory / image.filename).write_bytes(image.draw())
            writer.writerow(
                {
                    "external_id": product.external_id,
                    "title": product.title,
                    "description": product.description,
                    "category": category_separator.join(product.category_path),
                    "brand": product.brand,
                    "price": f"{product.price:.2f}",
                    "currency": product.currency,
                    "in_stock": "true" if product.in_stock else "false",
                    "image_urls": "|".join(image.filename for image in product.images),
                    "url": product.url,
                    **product.attributes,
                }
            )
    return csv_path


# ---------------------------------------------------------------------------------------------------------
# Drawing


def render_demo_jpeg(spec: DemoImageSpec) -> bytes:
    buffer = io.BytesIO()
    # No optimize/progressive: plain baseline encoding is fast and byte-stable for a given libjpeg.
    render_demo_image(spec).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def render_demo_image(spec: DemoImageSpec) -> Image.Image:
    painter = _Painter(spec.image_px, spec.view, spec.design.aspect)
    _SHAPE_DRAWERS[spec.design.category](painter, spec.design, COLOURS[spec.colour])
    return painter.render(spec.design, COLOURS[spec.colour])


def _mix(colour: RGB, other: RGB, amount: float) -> RGB:
    return tuple(round(a + (b - a) * amount) for a, b in zip(colour, other, strict=True))  # type: ignore[return-value]


def _tint(colour: RGB, amount: float = 0.6) -> RGB:
    return _mix(colour, (255, 255, 255), amount)


def _shade(colour: RGB, amount: float = 0.35) -> RGB:
    return _mix(colour, (0, 0, 0), amount)


_Part = tuple[str, list[Point], "RGB | tuple[int, int, int, int]", float]


class _Painter:
    """Collects an object's parts in object coordinates (y down, about -1..1) and renders them as a photo.

    Parts are recorded first and drawn later because the shadow and the drawing area need the whole
    silhouette. The object is drawn at twice the size and halved, since Pillow's polygons have hard edges and
    the box filter smooths them; only the object's bounding box is drawn at that size, to stay fast.
    """

    def __init__(self, image_px: int, view: _View, aspect: tuple[float, float]) -> None:
        self.image_px = image_px
        self.view = view
        self.unit = image_px * 2 * 0.39 * view.scale  # pixels of the 2x drawing per object unit
        angle = math.radians(view.angle_deg)
        self._cos, self._sin = math.cos(angle) * self.unit, math.sin(angle) * self.unit
        self._centre = (image_px + view.dx * self.unit, image_px + view.dy * self.unit)
        self.origin = (0.0, 0.0)  # top-left of the 2x drawing area, in 2x pixels
        self.aspect = aspect
        self.parts: list[_Part] = []

    def px(self, points: Sequence[Point], *, stretch: bool = True) -> list[Point]:
        """Object coordinates to pixels of the 2x drawing area."""
        ax, ay = self.aspect if stretch else (1.0, 1.0)
        cx, cy = self._centre[0] - self.origin[0], self._centre[1] - self.origin[1]
        return [
            (cx + x * ax * self._cos - y * ay * self._sin, cy + x * ax * self._sin + y * ay * self._cos)
            for x, y in points
        ]

    def body(self, points: list[Point]) -> None:
        """A part filled with the product's colour and pattern."""
        self.parts.append(("body", points, (0, 0, 0), 0.0))

    def solid(self, points: list[Point], colour: RGB) -> None:
        self.parts.append(("solid", points, colour, 0.0))

    def line(self, points: list[Point], colour: RGB | tuple[int, int, int, int], width: float) -> None:
        self.parts.append(("line", points, colour, width))

    def glaze(self, points: list[Point], alpha: int = 46) -> None:
        """A translucent highlight over what is already drawn."""
        self.parts.append(("glaze", points, (255, 255, 255, alpha), 0.0))

    def render(self, design: _Design, colour: RGB) -> Image.Image:
        canvas = _backdrop(self.view.background, self.image_px).copy()
        self._draw_shadow(canvas)
        x0, y0, x1, y1 = self._drawing_area()
        self.origin = (float(x0), float(y0))
        # Nearest-neighbour doubling and box halving give back the untouched pixels exactly.
        area = canvas.crop((x0 // 2, y0 // 2, x1 // 2, y1 // 2)).resize(
            (x1 - x0, y1 - y0), Image.Resampling.NEAREST
        )
        pattern = _pattern_image(self, design, colour, area.size) if design.pattern != "solid" else None
        draw = ImageDraw.Draw(area)
        # Pillow's blending path is about ten times slower, so only translucent parts take it.
        blend = ImageDraw.Draw(area, "RGBA")
        outline = _shade(colour, 0.3)
        outline_px = max(1, round(self.image_px / 130))
        body_polygons: list[list[Point]] = []

        def flush_bodies() -> None:  # consecutive body parts are pasted in one go
            if pattern is None:
                for polygon in body_polygons:
                    draw.polygon(polygon, fill=colour)
            else:
                mask = Image.new("L", area.size, 0)
                mask_draw = ImageDraw.Draw(mask)
                for polygon in body_polygons:
                    mask_draw.polygon(polygon, fill=255)
                area.paste(pattern, mask=mask)
            for polygon in body_polygons:
                # A closed line rather than polygon(outline=, width=), which builds full-size masks.
                draw.line([*polygon, polygon[0]], fill=outline, width=outline_px, joint="curve")
            body_polygons.clear()

        for kind, points, fill, width in self.parts:
            polygon = self.px(points)
            if kind == "body":
                body_polygons.append(polygon)
                continue
            if body_polygons:
                flush_bodies()
            pen = blend if len(fill) == 4 else draw
            if kind == "line":
                pen.line(polygon, fill=fill, width=max(1, round(width * self.unit)), joint="curve")
            else:
                pen.polygon(polygon, fill=fill)
        if body_polygons:
            flush_bodies()
        canvas.paste(area.reduce(2), (x0 // 2, y0 // 2))
        return canvas

    def _drawing_area(self) -> tuple[int, int, int, int]:
        """The parts' bounding box in 2x pixels, with even edges so it halves exactly."""
        xs: list[float] = []
        ys: list[float] = []
        for _kind, points, _fill, width in self.parts:
            margin = width * self.unit / 2 + 3
            for x, y in self.px(points):
                xs += (x - margin, x + margin)
                ys += (y - margin, y + margin)
        size = self.image_px * 2
        x0, y0 = max(0, int(min(xs)) // 2 * 2), max(0, int(min(ys)) // 2 * 2)
        x1, y1 = min(size, (int(max(xs)) + 2) // 2 * 2), min(size, (int(max(ys)) + 2) // 2 * 2)
        return x0, y0, max(x1, x0 + 2), max(y1, y0 + 2)

    def _draw_shadow(self, canvas: Image.Image) -> None:
        # Drawn at a quarter of the image size and blurred there: a soft shadow needs no detail.
        factor = 8  # 2x pixels per shadow pixel
        small_px = max(8, self.image_px // 4)
        mask = Image.new("L", (small_px, small_px), 0)
        draw = ImageDraw.Draw(mask)
        shift_x, shift_y = 0.024 * self.image_px, 0.06 * self.image_px
        for kind, points, _fill, width in self.parts:
            if kind == "glaze":
                continue
            scaled = [((x + shift_x) / factor, (y + shift_y) / factor) for x, y in self.px(points)]
            if kind == "line":
                draw.line(scaled, fill=255, width=max(1, round(width * self.unit / factor)))
            else:
                draw.polygon(scaled, fill=255)
        mask = mask.filter(ImageFilter.GaussianBlur(small_px * 0.022))
        bbox = mask.getbbox()
        if bbox is None:
            return
        scale = factor // 2
        mask = mask.crop(bbox).resize(
            ((bbox[2] - bbox[0]) * scale, (bbox[3] - bbox[1]) * scale), Image.Resampling.BILINEAR
        )
        mask = mask.point(lambda value: value * 4 // 10)
        canvas.paste(_shade(self.view.background, 0.45), (bbox[0] * scale, bbox[1] * scale), mask=mask)


@functools.lru_cache(maxsize=256)
def _backdrop(colour: RGB, size: int) -> Image.Image:
    """A studio sweep, a little darker towards the floor; callers copy it."""
    column = Image.new("RGB", (1, 8))
    for y in range(8):
        column.putpixel((0, y), _shade(colour, 0.1 * y / 7))
    return column.resize((size, size), Image.Resampling.BILINEAR)


def _pattern_image(painter: _Painter, design: _Design, colour: RGB, size: tuple[int, int]) -> Image.Image:
    """The product's fabric or glaze, laid out in the object's frame so it turns and moves with the object."""
    pattern = design.pattern
    image = Image.new("RGB", size, _tint(colour, 0.72) if pattern == "checks" else colour)
    draw = ImageDraw.Draw(image)
    angle = math.radians(design.pattern_angle_deg)
    cos, sin = math.cos(angle), math.sin(angle)

    def frame(points: list[Point]) -> list[Point]:
        return painter.px([(x * cos - y * sin, x * sin + y * cos) for x, y in points], stretch=False)

    period = design.pattern_period
    reach = 1.6  # object units: covers the object however it is turned
    steps = range(-int(reach / period) - 1, int(reach / period) + 2)
    if pattern == "stripes":
        light = _tint(colour, 0.78)
        for k in steps:
            top, bottom = k * period, (k + 0.45) * period
            draw.polygon(frame([(-reach, top), (reach, top), (reach, bottom), (-reach, bottom)]), fill=light)
    elif pattern == "checks":
        # Gingham: pale ground, half-tone bands both ways, full colour where they cross.
        half_tone = _mix(_tint(colour, 0.72), colour, 0.55)
        for k in steps:
            low, high = k * period, (k + 0.5) * period
            draw.polygon(frame([(-reach, low), (reach, low), (reach, high), (-reach, high)]), fill=half_tone)
            draw.polygon(frame([(low, -reach), (low, reach), (high, reach), (high, -reach)]), fill=half_tone)
        width, height = size
        half = period / 2
        corners = [(col * period, row * period) for row in steps for col in steps]
        squares = frame(
            [(x + dx, y + dy) for x, y in corners for dx, dy in ((0, 0), (half, 0), (half, half), (0, half))]
        )
        margin = period * painter.unit
        for i in range(0, len(squares), 4):
            if -margin < squares[i][0] < width + margin and -margin < squares[i][1] < height + margin:
                draw.polygon(squares[i : i + 4], fill=colour)
    elif pattern == "dots":
        light = _tint(colour, 0.8)
        radius = period * 0.22 * painter.unit
        width, height = size
        centres = frame([((col + 0.5 * (row % 2)) * period, row * period) for row in steps for col in steps])
        for x, y in centres:
            if -radius < x < width + radius and -radius < y < height + radius:
                draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=light)
    elif pattern == "gradient":
        # Light on top, the named colour in the middle, deeper at the bottom; bands in screen space are
        # cheaper than rotated ones and nobody sees the difference on a turned object.
        bands = 48
        width, height = size
        light, deep = _tint(colour, 0.75), _shade(colour, 0.2)
        for k in range(bands):
            t = k / (bands - 1)
            fill = _mix(light, colour, t / 0.6) if t < 0.6 else _mix(colour, deep, (t - 0.6) / 0.4)
            draw.rectangle((0, height * k // bands, width, height * (k + 1) // bands), fill=fill)
    return image


# Geometry helpers, all in object coordinates.


def _ellipse(
    cx: float, cy: float, rx: float, ry: float, start_deg: float = 0, end_deg: float = 360
) -> list[Point]:
    count = max(6, int(abs(end_deg - start_deg) / 6))
    return [
        (cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a)))
        for a in (start_deg + (end_deg - start_deg) * i / count for i in range(count + 1))
    ]


def _ring_arc(
    cx: float, cy: float, rx: float, ry: float, thickness: float, start_deg: float, end_deg: float
) -> list[Point]:
    outer = _ellipse(cx, cy, rx, ry, start_deg, end_deg)
    inner = _ellipse(cx, cy, rx - thickness, ry - thickness, start_deg, end_deg)
    return outer + inner[::-1]


def _rounded_rect(x0: float, y0: float, x1: float, y1: float, radius: float) -> list[Point]:
    r = min(radius, (x1 - x0) / 2, (y1 - y0) / 2)
    return (
        _ellipse(x1 - r, y0 + r, r, r, -90, 0)
        + _ellipse(x1 - r, y1 - r, r, r, 0, 90)
        + _ellipse(x0 + r, y1 - r, r, r, 90, 180)
        + _ellipse(x0 + r, y0 + r, r, r, 180, 270)
    )


def _regular_polygon(sides: int, radius: float, rotation_deg: float = -90, cy: float = 0.0) -> list[Point]:
    return [
        (
            radius * math.cos(math.radians(rotation_deg + 360 * i / sides)),
            cy + radius * math.sin(math.radians(rotation_deg + 360 * i / sides)),
        )
        for i in range(sides)
    ]


def _star(outer: float, inner: float, cy: float = 0.0) -> list[Point]:
    return [
        (
            (outer if i % 2 == 0 else inner) * math.cos(math.radians(-90 + 36 * i)),
            cy + (outer if i % 2 == 0 else inner) * math.sin(math.radians(-90 + 36 * i)),
        )
        for i in range(10)
    ]


def _mirror(right: list[Point]) -> list[Point]:
    """A symmetric outline from its right half, listed top to bottom."""
    return right + [(-x, y) for x, y in reversed(right)]


def _smooth(points: list[Point], samples: int = 6) -> list[Point]:
    """Catmull-Rom through the points, for vase profiles and other curves."""
    padded = [points[0], *points, points[-1]]
    out: list[Point] = []
    for i in range(1, len(padded) - 2):
        p0, p1, p2, p3 = padded[i - 1], padded[i], padded[i + 1], padded[i + 2]
        for step in range(samples):
            t = step / samples
            out.append(
                tuple(  # type: ignore[arg-type]
                    0.5
                    * (
                        2 * b
                        + (-a + c) * t
                        + (2 * a - 5 * b + 4 * c - d) * t * t
                        + (-a + 3 * b - 3 * c + d) * t**3
                    )
                    for a, b, c, d in zip(p0, p1, p2, p3, strict=True)
                )
            )
    out.append(points[-1])
    return out


def _pillow(half_w: float, half_h: float, pinch: float) -> list[Point]:
    """A stuffed cushion: corners poke out, edges curve in."""
    corners = [(-half_w, -half_h), (half_w, -half_h), (half_w, half_h), (-half_w, half_h)]
    out: list[Point] = []
    for (x0, y0), (x1, y1) in zip(corners, corners[1:] + corners[:1], strict=True):
        mx, my = (x0 + x1) / 2, (y0 + y1) / 2
        control = (mx * (1 - pinch / max(abs(mx), abs(my))), my * (1 - pinch / max(abs(mx), abs(my))))
        for i in range(12):
            t = i / 12
            out.append(
                (
                    (1 - t) ** 2 * x0 + 2 * (1 - t) * t * control[0] + t * t * x1,
                    (1 - t) ** 2 * y0 + 2 * (1 - t) * t * control[1] + t * t * y1,
                )
            )
    return out


# One drawer per category: each knows its silhouette family.


def _draw_top(p: _Painter, design: _Design, colour: RGB) -> None:
    hem = 0.88
    neck_depth = 0.14 + 0.08 * design.detail
    if design.shape == "tank top":
        scoop = [
            (0.24 * math.sin(math.radians(a)), -0.88 + (neck_depth + 0.3) * math.cos(math.radians(a)))
            for a in range(0, 91, 10)
        ]
        right = (
            scoop
            + [(0.38, -0.88)]
            + _smooth([(0.38, -0.88), (0.4, -0.58), (0.5, -0.36)], 4)[1:]
            + [(0.54, hem), (0.0, hem)]
        )
        collar = scoop
    else:
        neck = [
            (0.22 * math.sin(math.radians(a)), -0.84 + neck_depth * math.cos(math.radians(a)))
            for a in range(0, 91, 10)
        ]
        if design.shape == "t-shirt":
            arm = [(0.52, -0.78), (0.93, -0.44), (0.74, -0.22), (0.52, -0.36)]
        else:
            arm = [(0.52, -0.78), (0.8, -0.4), (0.92, 0.46), (0.72, 0.5), (0.6, -0.14), (0.52, -0.32)]
        right = neck + arm + [(0.54, hem), (0.0, hem)]
        collar = neck
    p.body(_mirror(right))
    p.line([(-x, y) for x, y in reversed(collar)] + collar[1:], _shade(colour, 0.3), 0.035)
    p.line([(-0.54, hem - 0.06), (0.54, hem - 0.06)], (*_shade(colour, 0.4), 70), 0.012)


def _draw_cushion(p: _Painter, design: _Design, colour: RGB) -> None:
    if design.shape == "round":
        p.body(_ellipse(0, 0, 0.82, 0.82))
        for i in range(12):
            a = math.radians(i * 30 + 15 * design.detail)
            p.line(
                [(0.08 * math.cos(a), 0.08 * math.sin(a)), (0.42 * math.cos(a), 0.42 * math.sin(a))],
                (*_shade(colour, 0.5), 60),
                0.018,
            )
        p.solid(_ellipse(0, 0, 0.075, 0.075), _shade(colour, 0.3))
        return
    half_w, half_h = (0.8, 0.8) if design.shape == "square" else (0.94, 0.5)
    outline = _pillow(half_w, half_h, 0.07)
    p.body(outline)
    p.line(
        _pillow(half_w - 0.07, half_h - 0.07, 0.06) + [(-half_w + 0.07, -half_h + 0.07)],
        (*_shade(colour, 0.4), 55),
        0.012,
    )


def _draw_mug(p: _Painter, design: _Design, colour: RGB) -> None:
    if design.shape == "espresso":
        p.solid(_ellipse(0, 0.6, 0.78, 0.17), (244, 243, 238))
        p.line(_ellipse(0, 0.6, 0.78, 0.17), (200, 198, 192), 0.012)
        p.body(_ring_arc(0.38, 0.14, 0.26, 0.2, 0.09, -80, 80))
        p.body(
            _ellipse(0, -0.25, 0.5, 0.1, 180, 360)
            + _smooth([(0.5, -0.25), (0.46, 0.2), (0.3, 0.56)], 6)
            + _ellipse(0, 0.56, 0.3, 0.06, 0, 180)
            + _smooth([(-0.3, 0.56), (-0.46, 0.2), (-0.5, -0.25)], 6)
        )
        p.solid(_ellipse(0, -0.25, 0.5, 0.1), _shade(colour, 0.45))
        p.glaze([(-0.38, -0.12), (-0.3, -0.12), (-0.22, 0.42), (-0.3, 0.42)], 50)
        return
    left, right, top, bottom = (
        (-0.58, 0.4, -0.66, 0.74) if design.shape == "classic" else (-0.44, 0.3, -0.88, 0.82)
    )
    mid = (left + right) / 2
    half = (right - left) / 2
    handle_ry = 0.34 if design.shape == "classic" else 0.44
    p.body(_ring_arc(right - 0.04, (top + bottom) / 2 + 0.02, 0.36, handle_ry, 0.12, -78, 78))
    r = 0.14
    p.body(
        _ellipse(mid, top, half, 0.11, 180, 360)
        + _ellipse(right - r, bottom - r, r, r, 0, 90)
        + _ellipse(left + r, bottom - r, r, r, 90, 180)
    )
    p.solid(_ellipse(mid, top, half - 0.035, 0.085), _shade(colour, 0.45))
    p.glaze(
        [
            (left + 0.1, top + 0.15),
            (left + 0.2, top + 0.15),
            (left + 0.2, bottom - 0.15),
            (left + 0.1, bottom - 0.15),
        ],
        52,
    )


def _draw_poster(p: _Painter, design: _Design, colour: RGB) -> None:
    frame = _CATEGORY_BY_KEY["posters"].accents[design.accent]
    p.solid([(-0.7, -0.94), (0.7, -0.94), (0.7, 0.94), (-0.7, 0.94)], frame)
    if design.accent == "white":
        p.line(
            [(-0.7, -0.94), (0.7, -0.94), (0.7, 0.94), (-0.7, 0.94), (-0.7, -0.94)], (205, 205, 200), 0.012
        )
    p.solid([(-0.62, -0.86), (0.62, -0.86), (0.62, 0.86), (-0.62, 0.86)], _tint(colour, 0.86))
    motif: list[Point] = {
        "circle": _ellipse(0, -0.1, 0.44, 0.44),
        "triangle": _regular_polygon(3, 0.56, -90, 0.0),
        "star": _star(0.56, 0.24, -0.06),
        "hexagon": _regular_polygon(6, 0.48, 0, -0.1),
    }[design.shape]
    p.body(motif)
    for y, width in ((0.62, 0.5), (0.7, 0.3)):
        p.line([(-width / 2, y), (width / 2, y)], (*_INK, 150), 0.025)


def _draw_lamp(p: _Painter, design: _Design, colour: RGB) -> None:
    metal = _CATEGORY_BY_KEY["lamps"].accents[design.accent]
    if design.shape == "pendant":
        p.line([(0, -1.2), (0, -0.44)], _INK, 0.02)
        p.solid(_rounded_rect(-0.07, -0.52, 0.07, -0.4, 0.03), metal)
        p.solid(_ellipse(0, 0.26, 0.13, 0.13), (255, 238, 176))
        p.body(
            [(-0.12, -0.42), (0.12, -0.42)]
            + _smooth([(0.12, -0.42), (0.3, -0.2), (0.64, 0.2)], 5)[1:]
            + _ellipse(0, 0.2, 0.64, 0.08, 0, 180)
            + _smooth([(-0.64, 0.2), (-0.3, -0.2), (-0.12, -0.42)], 5)[1:]
        )
        return
    if design.shape == "drum":
        p.solid([(-0.035, -0.3), (0.035, -0.3), (0.035, 0.72), (-0.035, 0.72)], metal)
        p.solid(_rounded_rect(-0.34, 0.68, 0.34, 0.84, 0.05), metal)
        p.body(_ellipse(0, -0.9, 0.36, 0.05, 180, 360) + _ellipse(0, -0.2, 0.58, 0.07, 0, 180))
        p.line(_ellipse(0, -0.2, 0.58, 0.07, 0, 180), _shade(colour, 0.35), 0.02)
        return
    p.solid([(-0.05, 0.1), (0.05, 0.1), (0.05, 0.36), (-0.05, 0.36)], metal)
    p.solid(_ellipse(0, 0.84, 0.38, 0.5, 180, 360), metal)
    p.body(_ellipse(0, -0.3, 0.54, 0.54))
    p.glaze(_ellipse(-0.2, -0.5, 0.16, 0.12), 80)


def _draw_bag(p: _Painter, design: _Design, colour: RGB) -> None:
    strap = _CATEGORY_BY_KEY["bags"].accents[design.accent]
    if design.shape == "tote":
        for cx in (-0.26, 0.26):
            p.solid(_ring_arc(cx, -0.28, 0.2, 0.52, 0.06, 180, 360), strap)
        p.body([(-0.62, -0.3), (0.62, -0.3), (0.72, 0.86), (-0.72, 0.86)])
        p.line([(-0.625, -0.22), (0.625, -0.22)], (*_shade(colour, 0.4), 90), 0.015)
        return
    if design.shape == "backpack":
        p.solid(_ring_arc(0, -0.72, 0.16, 0.16, 0.05, 180, 360), strap)
        p.body(_rounded_rect(-0.58, -0.76, 0.58, 0.86, 0.34))
        p.body(_rounded_rect(-0.42, 0.12, 0.42, 0.74, 0.13))
        p.line(_ellipse(0, 0.12, 0.42, 0.12, 180, 360), strap, 0.025)
        p.solid(_rounded_rect(-0.08, -0.02, 0.08, 0.04, 0.02), strap)
        return
    p.solid(_ring_arc(0, 0.0, 0.56, 0.94, 0.035, 180, 360), strap)
    p.body([(-0.66, -0.02), (0.66, -0.02)] + _ellipse(0, -0.02, 0.66, 0.7, 0, 180))
    p.line(_ellipse(0, -0.02, 0.5, 0.42, 10, 170), _shade(colour, 0.35), 0.02)
    p.solid(_ellipse(0, 0.4, 0.06, 0.06), strap)


def _draw_clock(p: _Painter, design: _Design, colour: RGB) -> None:
    hands = _CATEGORY_BY_KEY["clocks"].accents[design.accent]
    if design.shape == "round":
        p.body(_ellipse(0, 0, 0.86, 0.86))
        p.solid(_ellipse(0, 0, 0.68, 0.68), _OFF_WHITE)
    elif design.shape == "square":
        p.body(_rounded_rect(-0.82, -0.82, 0.82, 0.82, 0.12))
        p.solid(_ellipse(0, 0, 0.64, 0.64), _OFF_WHITE)
    else:
        p.body(_regular_polygon(6, 0.92, 0))
        p.solid(_ellipse(0, 0, 0.62, 0.62), _OFF_WHITE)
    for hour in range(12):
        a = math.radians(hour * 30)
        inner = 0.48 if hour % 3 == 0 else 0.53
        p.line(
            [(inner * math.sin(a), -inner * math.cos(a)), (0.58 * math.sin(a), -0.58 * math.cos(a))],
            _INK,
            0.03 if hour % 3 == 0 else 0.015,
        )
    minutes = design.detail * 720
    for length, angle_deg, width in ((0.32, minutes / 2, 0.045), (0.48, minutes * 6, 0.03)):
        a = math.radians(angle_deg)
        p.line([(0, 0), (length * math.sin(a), -length * math.cos(a))], hands, width)
    p.solid(_ellipse(0, 0, 0.045, 0.045), colour)


def _draw_vase(p: _Painter, design: _Design, colour: RGB) -> None:
    profiles: dict[str, list[Point]] = {
        "bottle": [
            (0.12, -0.96),
            (0.08, -0.86),
            (0.08, -0.46),
            (0.3, -0.2),
            (0.44, 0.16),
            (0.42, 0.62),
            (0.3, 0.86),
        ],
        "round": [
            (0.22, -0.84),
            (0.15, -0.74),
            (0.16, -0.6),
            (0.5, -0.34),
            (0.66, 0.08),
            (0.56, 0.5),
            (0.3, 0.76),
        ],
        "cylinder": [(0.37, -0.82), (0.36, -0.4), (0.35, 0.4), (0.33, 0.84)],
    }
    right = _smooth(profiles[design.shape], 5)
    top_y, bottom_y = right[0][1], right[-1][1]
    p.body(
        _ellipse(0, top_y, right[0][0], 0.05, 180, 360)
        + right
        + _ellipse(0, bottom_y, right[-1][0], 0.05, 0, 180)
        + [(-x, y) for x, y in reversed(right)]
    )
    p.solid(_ellipse(0, top_y, right[0][0] - 0.025, 0.035), _shade(colour, 0.55))
    # The highlight sits on the belly; a cylinder is widest at its lip, where it would poke out.
    widest = max((point for point in right if point[1] > top_y + 0.35), key=lambda point: point[0])
    p.glaze(
        _ellipse(-widest[0] * 0.55, widest[1], widest[0] * 0.12, 0.28 if design.shape != "bottle" else 0.2),
        54,
    )


_SHAPE_DRAWERS: dict[str, Callable[[_Painter, _Design, RGB], None]] = {
    "tops": _draw_top,
    "cushions": _draw_cushion,
    "mugs": _draw_mug,
    "posters": _draw_poster,
    "lamps": _draw_lamp,
    "bags": _draw_bag,
    "clocks": _draw_clock,
    "vases": _draw_vase,
}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the demo catalog as JPEG photos plus catalog.csv.")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--n-products", type=int, default=360)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--image-px", type=int, default=384)
    args = parser.parse_args(argv)
    products = generate_demo_catalog(n_products=args.n_products, seed=args.seed, image_px=args.image_px)
    print(write_demo_catalog(args.directory, products))


if __name__ == "__main__":
    main()
