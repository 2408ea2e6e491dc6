"""Evidence about a pair that the pixels themselves give: colours, black-and-white, mirrored or
rotated copies, size. Used by the `changes:` describer; nothing here guesses what an object is.

Images are assumed to be drawings or photos on any background; the background colour is taken from
the border pixels when the border is (nearly) one colour, and everything that differs from it clearly
is foreground. A picture that fills its frame (a flag, a pattern, a playing card, a photo) has no
background: a stripe along its edge is part of the picture, so every pixel is foreground. Each test
answers only when its evidence is strong (thresholds below), and stays silent otherwise: a pair the
pixels cannot tell apart gets no pixel statement at all.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

GRID = 48  # side of the downsampled masks compared for shape tests
MIN_FOREGROUND = 0.01  # share of the image that must be foreground for any statement
CHROMA_SAT = 0.25  # HSV saturation above which a pixel has a hue worth naming
COLOURFUL = 0.25  # share of chromatic foreground pixels for "in colour"
GRAYSCALE = 0.03  # at most this share of chromatic foreground pixels for "black and white"
DOMINANT = 0.45  # a named colour must hold this share of the chromatic pixels to be "the" colour
DOMINANT_LEAD = 2.0  # ... and this many times the share of the next colour (0.48 blue vs 0.50 orange: none)
BACKGROUND = 0.9  # share of border pixels that must share one colour for it to be the background
WHITE_BACKGROUND = 0.75  # ... or this share when that colour is the white page the renders are drawn on
RECOLOURED = 0.5  # share of the source's dominant-colour cells that must hold the target's colour
SAME_SHAPE = 0.85  # mask IoU for "the same shape" (a recoloured or mirrored copy scores ~1)
SAME_EDGES = 0.8  # and this share of matching edges (outlines and colour borders)
TRANSFORM_GAIN = 0.15  # a flipped/rotated mask must beat the plain comparison by this much
SIZE_RATIO = 2.0  # foreground area ratio for "bigger" / "smaller"

# Hue ranges in degrees -> name (brown is split from orange/red by value, below).
_HUES = ((15, "red"), (40, "orange"), (68, "yellow"), (160, "green"), (195, "cyan"), (255, "blue"),
         (290, "purple"), (335, "pink"), (360, "red"))


@dataclass
class PixelStats:
    foreground: float  # share of pixels that are foreground
    chromatic: float  # share of foreground pixels with a nameable hue
    colours: dict[str, float]  # colour name -> share of the chromatic pixels
    crop_colours: np.ndarray  # (GRID, GRID) str, colour name per cell of the bounding box ("" = none)
    mask: np.ndarray  # (GRID, GRID) bool, foreground of the whole image
    crop_mask: np.ndarray  # (GRID, GRID) bool, foreground of its bounding box, resized
    crop_edges: np.ndarray  # (GRID, GRID) bool, colour edges inside the bounding box, resized
    area: float  # foreground bounding-box area, as a share of the image

    @property
    def dominant(self) -> str:
        if not self.colours:
            return ""
        ranked = sorted(self.colours.values(), reverse=True)
        name = max(self.colours, key=lambda k: self.colours[k])
        runner_up = ranked[1] if len(ranked) > 1 else 0.0
        return name if ranked[0] >= DOMINANT and ranked[0] >= DOMINANT_LEAD * runner_up else ""

    @property
    def in_colour(self) -> bool:
        return self.chromatic >= COLOURFUL

    @property
    def black_and_white(self) -> bool:
        return self.chromatic <= GRAYSCALE


def _rgb(data: bytes | Image.Image, side: int = 160) -> np.ndarray:
    img = data if isinstance(data, Image.Image) else Image.open(io.BytesIO(data))
    img = img.convert("RGB")
    img.thumbnail((side, side))
    return np.asarray(img, dtype=np.float32) / 255.0  # (H, W, 3)


def _hsv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mx, mn = rgb.max(-1), rgb.min(-1)
    delta = mx - mn
    sat = np.where(mx > 0, delta / np.maximum(mx, 1e-6), 0.0)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    d = np.maximum(delta, 1e-6)
    hue = np.where(mx == r, ((g - b) / d) % 6, np.where(mx == g, (b - r) / d + 2, (r - g) / d + 4)) * 60.0
    return hue, sat, mx


def colour_name(hue: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Names for chromatic pixels (hue in degrees, HSV value in [0, 1])."""
    bounds = np.array([h for h, _ in _HUES])
    names = np.array([n for _, n in _HUES])
    out = names[np.searchsorted(bounds, hue % 360, side="right").clip(0, len(names) - 1)]
    brownish = (value < 0.6) & (((hue % 360) < 40) | ((hue % 360) >= 345))
    return np.where(brownish, "brown", out)


def _grid(mask: np.ndarray) -> np.ndarray:
    img = Image.fromarray(mask.astype(np.uint8) * 255).resize((GRID, GRID), Image.BILINEAR)
    return np.asarray(img) >= 128


def background(rgb: np.ndarray) -> np.ndarray | None:
    """The background colour, or None when the picture fills its frame. The border's median colour
    is the background only when it runs nearly all round the image: a flag's top stripe (Estonia's
    blue, Germany's black) is no background, and taking it for one leaves the other stripes as "the
    drawing" (Estonia read as black and white)."""
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])  # (perimeter, 3)
    median = np.median(border, axis=0)
    share = float((np.abs(border - median).max(-1) <= 0.12).mean())
    white = bool(median.min() >= 0.88)  # a drawing cropped tight to its page still shows the white page
    return median if share >= (WHITE_BACKGROUND if white else BACKGROUND) else None


def pixel_stats(data: bytes | Image.Image) -> PixelStats:
    rgb = _rgb(data)
    bg = background(rgb)
    fg = np.abs(rgb - bg).max(-1) > 0.12 if bg is not None else np.ones(rgb.shape[:2], bool)  # (H, W)
    hue, sat, val = _hsv(rgb)
    n_fg = int(fg.sum())
    chroma = fg & (sat >= CHROMA_SAT) & (val >= 0.2)
    colours: dict[str, float] = {}
    names_map = np.full(fg.shape, "", dtype=object)
    if chroma.any():
        pixel_names = colour_name(hue[chroma], val[chroma])
        names_map[chroma] = pixel_names
        names, counts = np.unique(pixel_names, return_counts=True)
        colours = {str(n): float(c) / chroma.sum() for n, c in zip(names, counts)}
    if n_fg:
        ys, xs = np.nonzero(fg)
        box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
        area = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1) / fg.size
    else:
        box, area = (slice(None), slice(None)), 0.0
    return PixelStats(foreground=n_fg / fg.size, chromatic=float(chroma.sum()) / max(n_fg, 1), colours=colours,
                      crop_colours=_name_grid(names_map[box]), mask=_grid(fg), crop_mask=_grid(fg[box]),
                      crop_edges=_edges(rgb[box]), area=float(area))


def _name_grid(names: np.ndarray) -> np.ndarray:
    """(GRID, GRID) colour names sampled from a (H, W) name map (nearest cell centre)."""
    h, w = names.shape
    ys = ((np.arange(GRID) + 0.5) * h / GRID).astype(int).clip(0, h - 1)
    xs = ((np.arange(GRID) + 0.5) * w / GRID).astype(int).clip(0, w - 1)
    return names[np.ix_(ys, xs)]


def recoloured(src: PixelStats, tgt: PixelStats, transform: str = "") -> bool:
    """True when the same parts changed colour: most places that hold the source's dominant colour
    hold the target's in the target, or the other way round (a pale target theme leaves many of the
    source's places without a nameable hue, so one direction is enough). A 3 of hearts and a 6 of
    clubs share the card's outline, but the red pips are not where the clubs are: no recolouring,
    whatever the shares say."""
    cells = _TRANSFORMS[transform](src.crop_colours) if transform else src.crop_colours
    for here, there, a, b in ((cells, tgt.crop_colours, src.dominant, tgt.dominant),
                              (tgt.crop_colours, cells, tgt.dominant, src.dominant)):
        where = here == a
        if where.any() and float((there[where] == b).mean()) >= RECOLOURED:
            return True
    return False


def _edges(rgb: np.ndarray) -> np.ndarray:
    """Where any channel changes sharply (outlines and the borders between colour regions), on the
    GRID: a recoloured copy keeps them, a different drawing of the same outline does not."""
    img = Image.fromarray((rgb * 255).astype(np.uint8)).resize((GRID, GRID), Image.BILINEAR)
    a = np.asarray(img, dtype=np.float32) / 255.0
    gx = np.abs(np.diff(a, axis=1, append=a[:, -1:])).max(-1)
    gy = np.abs(np.diff(a, axis=0, append=a[-1:])).max(-1)
    return (gx + gy) > 0.15


def edge_match(a: np.ndarray, b: np.ndarray) -> float:
    """Share of edge pixels of each side that have an edge of the other within one cell (symmetric)."""
    def grow(m: np.ndarray) -> np.ndarray:
        p = np.pad(m, 1)
        return p[1:-1, 1:-1] | p[:-2, 1:-1] | p[2:, 1:-1] | p[1:-1, :-2] | p[1:-1, 2:]

    total = a.sum() + b.sum()
    if not total:
        return 0.0
    return float(((a & grow(b)).sum() + (b & grow(a)).sum()) / total)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def same_colours(src: PixelStats, tgt: PixelStats, transform: str = "") -> bool:
    """True when the (transformed) source has the target's colours in the same places, on the cells
    where either has a hue. A flag of three horizontal stripes turned a quarter turn has the outline
    and the stripe borders of a vertical tricolour, but not its colours: Armenia is no rotated Italy."""
    a = _TRANSFORMS[transform](src.crop_colours) if transform else src.crop_colours
    either = (a != "") | (tgt.crop_colours != "")
    return not either.any() or float((a[either] == tgt.crop_colours[either]).mean()) >= RECOLOURED


@dataclass
class PixelEvidence:
    """What the pixels say about source -> target (empty fields: nothing to say)."""

    same_shape: bool = False
    colour_from: str = ""  # dominant colours, when both have one and they differ
    colour_to: str = ""  # (also the target's dominant colour when it gains colour)
    to_black_and_white: bool = False
    to_colour: bool = False
    transform: str = ""  # "mirror" | "flip_vertical" | "rotate_90" | "rotate_180" | "rotate_270"
    size: str = ""  # "bigger" | "smaller"
    shape_iou: float = 0.0


_TRANSFORMS = {
    "mirror": lambda m: m[:, ::-1],
    "flip_vertical": lambda m: m[::-1, :],
    "rotate_90": lambda m: np.rot90(m, 1),
    "rotate_180": lambda m: np.rot90(m, 2),
    "rotate_270": lambda m: np.rot90(m, 3),
}


def _match(a_mask: np.ndarray, a_edges: np.ndarray, tgt: PixelStats) -> tuple[float, float]:
    return iou(a_mask, tgt.crop_mask), edge_match(a_edges, tgt.crop_edges)


def compare(src: PixelStats, tgt: PixelStats) -> PixelEvidence:
    ev = PixelEvidence()
    if src.foreground < MIN_FOREGROUND or tgt.foreground < MIN_FOREGROUND:
        return ev
    plain_iou, plain_edges = _match(src.crop_mask, src.crop_edges, tgt)
    ev.shape_iou = plain_iou
    plain = plain_iou + plain_edges
    best_name, best, best_parts = "", plain, (plain_iou, plain_edges)
    for name, fn in _TRANSFORMS.items():
        parts = _match(fn(src.crop_mask), fn(src.crop_edges), tgt)
        if sum(parts) > best:
            best_name, best, best_parts = name, sum(parts), parts
    same = lambda parts: parts[0] >= SAME_SHAPE and parts[1] >= SAME_EDGES  # noqa: E731
    if best_name and same(best_parts) and best - plain >= 2 * TRANSFORM_GAIN and same_colours(src, tgt, best_name):
        ev.transform = best_name  # ties go to the first listed transform (mirror before rotations)
        ev.same_shape = True
    elif same((plain_iou, plain_edges)):
        ev.same_shape = True
    if not ev.same_shape:
        return ev
    if src.in_colour and tgt.black_and_white:
        ev.to_black_and_white = True
    elif src.black_and_white and tgt.in_colour:
        ev.to_colour = True
        ev.colour_to = tgt.dominant  # "" when no one colour dominates
    elif src.dominant and tgt.dominant and src.dominant != tgt.dominant and recoloured(src, tgt, ev.transform):
        ev.colour_from, ev.colour_to = src.dominant, tgt.dominant
    ratio = (tgt.area + 1e-6) / (src.area + 1e-6)
    if ratio >= SIZE_RATIO:
        ev.size = "bigger"
    elif ratio <= 1 / SIZE_RATIO:
        ev.size = "smaller"
    return ev
