"""Procedural synthetic facades: a label map x and a photo y of the same layout.

The layout (floors, window grid, door, balconies, cornice) is drawn once and rendered twice:
as a CMP-Facades-style label map in class colours (x) and as a "photo" (y) whose appearance
(wall colour and texture, window tint, lighting, sensor noise) is sampled per image. y is thus
only partly predictable from x; that irreducible uncertainty is what lets a generator memorise
its training pairs, the signal the reconstruction-loss attack (Eq. 3) exploits.

Every image is a pure function of ``(data_seed, role, index)``, so data sets are deterministic
and the train / proxy / test roles never share an image.
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import torch

from akdray import storage

# Class colours in the spirit of the CMP Facades label maps.
CLASS_COLOURS = {
    "background": (0, 0, 170),
    "wall": (0, 85, 255),
    "window": (0, 170, 255),
    "door": (170, 255, 85),
    "balcony": (255, 85, 0),
    "cornice": (255, 255, 0),
    "sill": (85, 255, 170),
    "shop": (255, 0, 0),
}
# "reference": pool of the reference models; "val": validation non-members (search objectives)
ROLE_IDS = {"train": 0, "proxy": 1, "test": 2, "reference": 3, "val": 4}
_RENDER_SCALE = 4  # draw at 4x, then area-downsample the photo


def _layout(rng: np.random.Generator, size: int) -> dict:
    """Random facade geometry in pixel units of a ``size`` x ``size`` canvas."""
    top = int(rng.uniform(0.0, 0.15) * size)
    floors = int(rng.integers(3, 7))
    cols = int(rng.integers(2, 6))
    cornice_h = max(1, int(rng.uniform(0.03, 0.07) * size))
    ground_h = int(rng.uniform(0.15, 0.25) * size)
    return dict(
        top=top, floors=floors, cols=cols, cornice_h=cornice_h, ground_h=ground_h,
        win_w=rng.uniform(0.35, 0.7), win_h=rng.uniform(0.4, 0.7),
        balcony_rows=rng.random(floors) < 0.35, shop=rng.random() < 0.4,
        door_col=int(rng.integers(0, cols)), sills=rng.random() < 0.6,
    )


def _boxes(lay: dict, size: int) -> list[tuple[str, int, int, int, int]]:
    """Label boxes (class, y0, y1, x0, x1) painted in order; later boxes win."""
    boxes = [("background", 0, size, 0, size), ("wall", lay["top"], size, 0, size)]
    boxes.append(("cornice", lay["top"], lay["top"] + lay["cornice_h"], 0, size))
    body_top = lay["top"] + lay["cornice_h"]
    body_bottom = size - lay["ground_h"]
    floor_h = (body_bottom - body_top) / lay["floors"]
    col_w = size / lay["cols"]
    for f in range(lay["floors"]):
        fy0 = body_top + f * floor_h
        wy0 = int(fy0 + floor_h * (1 - lay["win_h"]) / 2)
        wy1 = max(wy0 + 1, int(fy0 + floor_h * (1 + lay["win_h"]) / 2))
        for c in range(lay["cols"]):
            wx0 = int(c * col_w + col_w * (1 - lay["win_w"]) / 2)
            wx1 = max(wx0 + 1, int(c * col_w + col_w * (1 + lay["win_w"]) / 2))
            boxes.append(("window", wy0, wy1, wx0, wx1))
            if lay["sills"]:
                boxes.append(("sill", wy1, min(size, wy1 + max(1, size // 64)), wx0, wx1))
        if lay["balcony_rows"][f]:
            by0 = wy1 - max(1, int(floor_h * 0.15))
            boxes.append(("balcony", by0, wy1 + 1, int(col_w * 0.1), int(size - col_w * 0.1)))
    g0 = body_bottom
    if lay["shop"]:
        boxes.append(("shop", g0 + lay["ground_h"] // 6, size, int(size * 0.05), int(size * 0.95)))
    dx0 = int(lay["door_col"] * col_w + col_w * 0.25)
    boxes.append(("door", g0 + lay["ground_h"] // 5, size, dx0, max(dx0 + 1, int(dx0 + col_w * 0.5))))
    return boxes


def _palette(rng: np.random.Generator, names: list[str]) -> np.ndarray:
    """Per-image colours of the classes [len(names), 3] (not visible in the label map)."""
    palette = {
        "background": rng.uniform([0.45, 0.6, 0.75], [0.7, 0.8, 0.95]),
        "wall": rng.uniform(0.25, 0.9, 3) * rng.uniform([0.8, 0.7, 0.6], 1.0),
        "window": rng.uniform(0.05, 0.45, 3) * rng.uniform([0.6, 0.7, 0.9], 1.0),
        "door": rng.uniform(0.1, 0.5, 3) * np.array([1.0, 0.8, 0.6]),
        "balcony": rng.uniform(0.1, 0.6, 3),
        "cornice": rng.uniform(0.5, 1.0, 3),
        "sill": rng.uniform(0.6, 1.0, 3),
        "shop": rng.uniform(0.1, 0.9, 3),
    }
    return np.stack([palette[n] for n in names]).astype(np.float32)


def _flat_photo(rng: np.random.Generator, classes: np.ndarray, names: list[str], big: int) -> np.ndarray:
    """``flat``: class colours, a light gradient, faint brick rows and sensor noise (akdray <= 0.1)."""
    photo = _palette(rng, names)[classes]
    yy, xx = np.mgrid[0:big, 0:big].astype(np.float32) / big
    angle = rng.uniform(0, 2 * np.pi)
    light = 1.0 + rng.uniform(0.1, 0.35) * (np.cos(angle) * (xx - 0.5) + np.sin(angle) * (yy - 0.5))
    bricks = 1.0 + rng.uniform(0.0, 0.12) * np.sign(np.sin(yy * big / rng.uniform(3, 8) * np.pi))
    is_wall = (classes == names.index("wall"))[..., None]
    photo = photo * light[..., None] * np.where(is_wall, bricks[..., None], 1.0)
    return photo + rng.normal(0.0, rng.uniform(0.01, 0.06), (big, big, 3)).astype(np.float32)


def _textured_photo(rng: np.random.Generator, classes: np.ndarray, names: list[str], big: int) -> np.ndarray:
    """``textured``: sharp detail whose placement the label map does not fix.

    Walls are brick bonds (brick size, mortar colour, row phase and per-brick colour drawn per
    image), windows get mullions or not and a glare streak at a random place, doors vertical planks,
    the sky soft clouds. The best L1 prediction from x averages over these draws (a flat, blurred
    wall); a conditional GAN can render *a* sharp plausible one. That is what makes image quality
    separate L1-only from GAN+L1 generators on this task.
    """
    photo = _palette(rng, names)[classes]
    yy, xx = np.mgrid[0:big, 0:big].astype(np.float32)
    cls = lambda name: classes == names.index(name)  # noqa: E731
    # Bricks: rows of height h with a random phase; every other row shifted by half a brick.
    h = rng.uniform(2.5, 4.5) * _RENDER_SCALE
    w = h * rng.uniform(1.8, 2.8)
    ys, xs = yy + rng.uniform(0, h), xx + rng.uniform(0, w)
    row = np.floor(ys / h)
    xs = xs + (row % 2) * w / 2
    col = np.floor(xs / w)
    mortar = ((ys % h) < _RENDER_SCALE * 0.8) | ((xs % w) < _RENDER_SCALE * 0.8)
    brick_id = (row * 7919 + col).astype(np.int64) % 4096
    brick_tone = 1.0 + rng.uniform(0.05, 0.25) * rng.standard_normal(4096).astype(np.float32)[brick_id]
    mortar_colour = rng.uniform(0.55, 0.95, 3).astype(np.float32)
    wall = cls("wall")[..., None]
    bricked = np.where(mortar[..., None], mortar_colour, photo * brick_tone[..., None])
    photo = np.where(wall, bricked, photo)
    # Windows: mullions (cross bars) in some images, a diagonal glare at a random offset in all.
    window = cls("window")[..., None]
    glare = (np.abs(((xx + yy + rng.uniform(0, big)) % (big / rng.uniform(2, 5))) - 3 * _RENDER_SCALE)
             < _RENDER_SCALE * rng.uniform(0.6, 1.5))
    photo = np.where(window & glare[..., None], np.minimum(photo + rng.uniform(0.3, 0.6), 1.0), photo)
    if rng.random() < 0.5:
        period = big / rng.integers(6, 12)
        bars = ((xx % period) < _RENDER_SCALE * 0.7) | ((yy % period) < _RENDER_SCALE * 0.7)
        photo = np.where(window & bars[..., None], rng.uniform(0.7, 1.0, 3).astype(np.float32), photo)
    # Doors: vertical planks of random width; the sky: soft random clouds.
    planks = ((xx + rng.uniform(0, big)) % (rng.uniform(1.5, 3.0) * _RENDER_SCALE)) < _RENDER_SCALE * 0.5
    photo = np.where(cls("door")[..., None] & planks[..., None], photo * 0.6, photo)
    clouds = sum(np.sin(xx / big * f * np.pi + rng.uniform(0, 6.3)) * np.sin(yy / big * f * np.pi + rng.uniform(0, 6.3))
                 for f in rng.uniform(1.0, 4.0, 3))
    photo = np.where(cls("background")[..., None], photo + 0.08 * clouds[..., None], photo)
    return photo + rng.normal(0.0, 0.02, (big, big, 3)).astype(np.float32)


# ``sharp``: the colour of every class is (nearly) fixed, so the label map predicts it; only sharp
# detail is drawn at random. Base colours (r, g, b) in [0, 1], jittered by +-0.04 per image.
SHARP_COLOURS = {
    "background": (0.55, 0.70, 0.90), "wall": (0.62, 0.30, 0.22), "window": (0.12, 0.16, 0.26),
    "door": (0.38, 0.24, 0.12), "balcony": (0.28, 0.28, 0.30), "cornice": (0.82, 0.78, 0.68),
    "sill": (0.86, 0.86, 0.80), "shop": (0.22, 0.30, 0.36),
}
SHARP_MORTAR = (0.90, 0.88, 0.80)


def _sharp_photo(rng: np.random.Generator, classes: np.ndarray, names: list[str], big: int,
                 texture: np.random.Generator) -> np.ndarray:
    """``sharp``: colours the label map predicts, crisp detail it does not.

    Walls are a brick bond with 1-pixel mortar lines on the output grid (bricks 4-6 pixels high,
    2.5-3.5 heights wide), whose size, row and column phase and per-brick tone are drawn from
    ``texture``; windows get mullions (half of them) and a glare streak, doors planks, all at
    random places. Since the phases are uniform, a mortar pixel is a minority event at every
    position: the per-pixel L1 optimum (the median) is a flat brick wall, while a conditional GAN can draw *a* crisp bond.
    """
    base = np.array([SHARP_COLOURS[n] for n in names], np.float32)
    photo = (base + rng.uniform(-0.04, 0.04, base.shape).astype(np.float32))[classes]
    s = _RENDER_SCALE
    yy, xx = np.mgrid[0:big, 0:big]
    h = int(texture.integers(4, 7)) * s
    w = int(texture.integers(5 * h // s // 2, 7 * h // s // 2 + 1)) * s
    ys = yy + int(texture.integers(0, h // s)) * s
    row = ys // h
    xs = xx + int(texture.integers(0, w // s)) * s + (row % 2) * (w // s // 2) * s
    mortar = ((ys % h) < s) | ((xs % w) < s)
    tone = 1.0 + 0.15 * texture.standard_normal(4096).astype(np.float32)[(row * 7919 + xs // w) % 4096]
    wall = (classes == names.index("wall"))[..., None]
    photo = np.where(wall, np.where(mortar[..., None], np.float32(SHARP_MORTAR), photo * tone[..., None]), photo)
    window = (classes == names.index("window"))[..., None]
    period = int(texture.integers(3, 6)) * s
    glare = ((xx + yy + int(texture.integers(0, big // s)) * s) % (period * 3)) < s
    photo = np.where(window & glare[..., None], np.float32(0.85), photo)
    if texture.random() < 0.5:
        bars = ((xx + int(texture.integers(0, 3)) * s) % (3 * s) < s) | ((yy + int(texture.integers(0, 3)) * s) % (3 * s) < s)
        photo = np.where(window & bars[..., None], np.float32(SHARP_MORTAR), photo)
    planks = ((xx + int(texture.integers(0, 2)) * s) % (2 * s)) < s
    photo = np.where((classes == names.index("door"))[..., None] & planks[..., None], photo * 0.55, photo)
    return photo + texture.normal(0.0, 0.02, (big, big, 3)).astype(np.float32)


def _render_pair(rng: np.random.Generator, size: int, style: str,
                 texture: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    big = size * _RENDER_SCALE
    lay = _layout(rng, big)
    boxes = _boxes(lay, big)
    label = np.zeros((big, big, 3), np.uint8)
    classes = np.zeros((big, big), np.int16)
    names = list(CLASS_COLOURS)
    for name, y0, y1, x0, x1 in boxes:
        label[y0:y1, x0:x1] = CLASS_COLOURS[name]
        classes[y0:y1, x0:x1] = names.index(name)

    if style == "sharp":
        photo = _sharp_photo(rng, classes, names, big, rng if texture is None else texture)
    else:
        photo = (_textured_photo if style == "textured" else _flat_photo)(rng, classes, names, big)
    photo = photo.reshape(size, _RENDER_SCALE, size, _RENDER_SCALE, 3).mean(axis=(1, 3))
    label_small = label[_RENDER_SCALE // 2 :: _RENDER_SCALE, _RENDER_SCALE // 2 :: _RENDER_SCALE]
    return label_small, (np.clip(photo, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


STYLES = ("textured", "flat", "sharp")


def synthetic_facades(n: int, size: int, data_seed: int, role: str, style: str = "textured",
                      texture_draw: int | None = None) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """``n`` pairs (x label maps, y photos) as uint8 [n, 3, size, size] plus their names.

    ``texture_draw`` (``sharp`` only; for benchmarks): the same layouts and colours with the random
    detail drawn from another stream - another plausible photo of each label map.
    """
    xs, ys = zip(*(render_one(i, size, data_seed, role, style, texture_draw) for i in range(n)))
    to_tensor = lambda arrs: torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).contiguous()  # noqa: E731
    return to_tensor(xs), to_tensor(ys), _names(role, n)


def render_one(index: int, size: int, data_seed: int, role: str, style: str = "textured",
               texture_draw: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pair ``index`` of :func:`synthetic_facades` as uint8 HWC arrays (label map, photo); the
    ``texture_draw`` of one pair without rendering the others (the renderer as a teacher)."""
    rng = np.random.default_rng([data_seed, ROLE_IDS[role], index])
    texture = None if texture_draw is None else np.random.default_rng([data_seed, ROLE_IDS[role], index, 1 + texture_draw])
    return _render_pair(rng, size, style, texture)


def _names(role: str, n: int) -> tuple[str, ...]:
    return tuple(f"synthetic/{role}/{i:05d}" for i in range(n))


_SOURCE = Path(__file__).read_bytes()  # cache entries are keyed by the generator's code


def synthetic_pairs(n: int, size: int, data_seed: int, role: str,
                    style: str = "textured") -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """:func:`synthetic_facades`, cached on disk (``akdray.storage.cache_root() / "synthetic"``).

    Rendering costs milliseconds per image (a cpu-small run draws about 2,000), and every trial of a
    sweep draws the same images again; the entry's name hashes this module's source and the
    arguments, so a changed generator never hits a stale entry. Written atomically.
    """
    source = hashlib.sha256(_SOURCE + repr((n, size, data_seed, role, style)).encode())
    path = storage.cache_root() / "synthetic" / f"{style}-s{data_seed}-{role}-{n}x{size}-{source.hexdigest()[:32]}.pt"
    if path.is_file():
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
            if entry["x"].shape == entry["y"].shape == (n, 3, size, size):
                return entry["x"], entry["y"], _names(role, n)
        except Exception:  # truncated or foreign: render again and overwrite
            pass
    x, y, names = synthetic_facades(n, size, data_seed, role, style)
    buf = io.BytesIO()
    torch.save({"x": x, "y": y}, buf)
    storage.write_bytes(str(path), buf.getvalue())
    return x, y, names
