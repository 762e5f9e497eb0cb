"""A seeded procedural generator of microfossil-like images (the example dataset).

The images are *drawn*, not photographed: five morphotypes loosely modelled on
microfossil groups, each with within-class variation in size, rotation,
elongation, number of whorls / chambers / spines, wall thickness, texture,
imaging style (thin section, dark field, tinted transmitted light), background,
debris, blur and noise. The imaging style and background are drawn
independently of the morphotype, so they are no shortcut to the class.

They exist so that the command line, the notebooks and the tests have a small
dataset to run on without downloading anything. Numbers computed on them say
nothing about real fossils.

``make_example_dataset(root)`` writes ``root/<morphotype>/<morphotype>_NNN.jpg``.
The same ``seed`` gives byte-identical files (for the same Pillow/libjpeg build);
image ``i`` of a class does not depend on ``n_per_class``, so a larger dataset
extends a smaller one.

``python -m palaeo_ssl.synthetic data/example`` regenerates the committed
example dataset.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

#: Supersampling factor: shapes are drawn this many times larger, then downscaled (anti-aliasing).
_SS = 3

#: Background colour and ink colour of the imaging styles (RGB 0..255).
_STYLES = (
    # thin section: pale paper-like background, dark calcite walls
    dict(bg=(232, 228, 218), ink=(38, 34, 30)),
    # sepia-stained thin section
    dict(bg=(226, 210, 180), ink=(70, 42, 20)),
    # dark field / SEM-like: dark background, bright specimen
    dict(bg=(22, 24, 28), ink=(235, 232, 225)),
    # blue-tinted transmitted light
    dict(bg=(200, 214, 228), ink=(30, 40, 70)),
    # green-tinted transmitted light (palynology slide)
    dict(bg=(214, 226, 196), ink=(40, 60, 30)),
)


class _Canvas:
    """An ink-density canvas (``L`` image, 0 = none, 255 = full ink) with a similarity transform.

    Shapes are given in specimen coordinates (unit ~ the specimen's half-size);
    ``scale`` (pixels per unit, at output resolution), ``angle`` (radians),
    ``centre`` (pixels) and ``flip`` (mirror the x axis) place them on the image.
    """

    def __init__(self, size: int, scale: float, angle: float, centre: tuple[float, float], flip: bool = False):
        self.size = size
        self.img = Image.new("L", (size * _SS, size * _SS), 0)
        self.draw = ImageDraw.Draw(self.img)
        c, s = math.cos(angle), math.sin(angle)
        k = scale * _SS
        fx = -1.0 if flip else 1.0
        self._m = np.array([[c * k * fx, -s * k], [s * k * fx, c * k]])
        self._t = np.array(centre, dtype=float) * _SS
        self.px = k  # pixels (supersampled) per specimen unit

    def pts(self, xy: np.ndarray) -> list[tuple[float, float]]:
        """(M, 2) specimen coordinates -> list of supersampled pixel tuples."""
        out = np.asarray(xy, dtype=float) @ self._m.T + self._t
        return [tuple(p) for p in out]

    def width(self, w: float) -> int:
        """A line width in specimen units -> supersampled pixels (at least 1)."""
        return max(1, int(round(w * self.px)))

    def polygon(self, xy: np.ndarray, fill: int) -> None:
        self.draw.polygon(self.pts(xy), fill=int(fill))

    def line(self, xy: np.ndarray, value: int, w: float, closed: bool = False) -> None:
        p = self.pts(xy)
        if closed:
            p = p + p[:1]
        self.draw.line(p, fill=int(value), width=self.width(w), joint="curve")

    def disc(self, x: float, y: float, r: float, fill: int) -> None:
        cx, cy = self.pts(np.array([[x, y]]))[0]
        rr = max(0.5, r * self.px)
        self.draw.ellipse([cx - rr, cy - rr, cx + rr, cy + rr], fill=int(fill))

    def result(self) -> np.ndarray:
        """The ink density at output resolution, float32 (size, size) in [0, 1]."""
        small = self.img.resize((self.size, self.size), Image.Resampling.LANCZOS)
        return np.asarray(small, dtype=np.float32) / 255.0


def _circle(n: int = 96, rx: float = 1.0, ry: float = 1.0) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([rx * np.cos(t), ry * np.sin(t)], axis=1)


# --------------------------------------------------------------------------- morphotypes
# Each draws one specimen on a canvas in specimen units, where the specimen fits
# roughly within the unit disc (elongate forms are scaled to fit by their caller).


def _fusulinid(cv: _Canvas, rng: np.random.Generator) -> None:
    """Axial section of a fusiform (spindle-shaped) fusulinid: whorls, folded septa, proloculus."""
    elong = rng.uniform(1.9, 3.2)  # half-length / half-height
    L = 1.0
    H = L / elong
    p = rng.uniform(1.6, 2.6)  # end shape: larger p -> blunter poles
    q = rng.uniform(0.6, 0.9)  # end shape: smaller q -> more pointed poles
    x = np.linspace(-L, L, 121)

    def spindle(s: float) -> np.ndarray:
        xs = x * s
        hs = H * s * np.clip(1 - np.abs(xs / (L * s)) ** p, 0, None) ** q
        top = np.stack([xs, hs], 1)
        bot = np.stack([xs[::-1], -hs[::-1]], 1)
        return np.concatenate([top, bot[1:-1]])

    n_whorls = int(rng.integers(4, 8))
    body = int(rng.uniform(70, 120))
    cv.polygon(spindle(1.0), body)
    wall = rng.uniform(0.012, 0.025)
    scales = ((np.arange(1, n_whorls + 1) / n_whorls) ** rng.uniform(0.9, 1.3))
    # whorls are slightly off-centre (a coil seen in section), alternating sides
    for k, s in enumerate(scales):
        off = (-1) ** k * 0.015 * s
        cv.line(spindle(s) + [0, off], 235, wall * (0.7 + 0.5 * s), closed=True)
    # septa: short wavy folds between consecutive whorls, denser towards the poles
    n_septa = int(rng.integers(14, 30))
    prev = 0.0
    for s in scales:
        for _ in range(int(n_septa * s)):
            xs = rng.uniform(-0.95, 0.95) * L * s
            h_out = H * s * max(0.0, 1 - abs(xs / (L * s)) ** p) ** q
            h_in = H * prev * max(0.0, 1 - min(1.0, abs(xs / (L * max(prev, 1e-6)))) ** p) ** q
            sign = rng.choice([-1, 1])
            ys = np.linspace(h_in, h_out, 6) * sign
            wig = np.sin(np.linspace(0, np.pi * rng.uniform(1, 3), 6)) * 0.02 * L
            cv.line(np.stack([xs + wig, ys], 1), 225, wall * 0.8)
        prev = s
    # tunnel (a dark band along the axis) and proloculus
    if rng.random() < 0.7:
        cv.polygon(np.array([[-0.08, -H * 0.06], [0.08, -H * 0.06], [0.08, H * 0.06], [-0.08, H * 0.06]]) * [L * 3, 1], 210)
    cv.disc(0, 0, H * rng.uniform(0.06, 0.12), 255)
    cv.disc(0, 0, H * rng.uniform(0.02, 0.04), body // 2)


def _radiolarian(cv: _Canvas, rng: np.random.Generator) -> None:
    """A spumellarian radiolarian: latticed sphere with hexagonal pores, medullary shell and radial spines."""
    ry = rng.uniform(0.85, 1.0)
    R = 0.72
    body = int(rng.uniform(140, 200))
    # spines first (they run under the shell)
    n_sp = int(rng.integers(6, 15))
    a0 = rng.uniform(0, 2 * np.pi)
    for k in range(n_sp):
        a = a0 + 2 * np.pi * k / n_sp + rng.normal(0, 0.08)
        length = R * rng.uniform(1.2, 1.4)
        base = rng.uniform(0.035, 0.07)
        d = np.array([np.cos(a), np.sin(a) * ry])
        n = np.array([-d[1], d[0]])
        tri = np.array([d * R * 0.8 + n * base, d * R * 0.8 - n * base, d * length])
        cv.polygon(tri, 230)
    cv.polygon(_circle(128, R, R * ry), body)
    # hexagonal pore lattice clipped to the shell
    pore = rng.uniform(0.035, 0.06)
    step = pore * rng.uniform(2.3, 2.9)
    jit = rng.uniform(0.0, 0.25) * step
    for j, yy in enumerate(np.arange(-R, R + 1e-9, step * 0.866)):
        for xx in np.arange(-R, R + 1e-9, step) + (step / 2 if j % 2 else 0):
            x, y = xx + rng.normal(0, jit / 3), yy + rng.normal(0, jit / 3)
            if (x / R) ** 2 + (y / (R * ry)) ** 2 < 0.88:
                cv.disc(x, y, pore * rng.uniform(0.8, 1.15), 0)
    cv.line(_circle(128, R, R * ry), 245, rng.uniform(0.02, 0.04), closed=True)
    if rng.random() < 0.75:  # medullary (inner) shell
        r_in = R * rng.uniform(0.3, 0.45)
        cv.line(_circle(64, r_in, r_in * ry), 240, 0.025, closed=True)


def _coiled_foram(cv: _Canvas, rng: np.random.Generator) -> None:
    """A planispirally coiled foraminifer: chambers growing along a logarithmic spiral."""
    n_ch = int(rng.integers(9, 17))
    whorls = rng.uniform(1.4, 2.4)
    dtheta = 2 * np.pi * whorls / n_ch
    b = rng.uniform(0.12, 0.19)  # spiral growth per radian
    theta = dtheta * np.arange(n_ch)
    r = np.exp(b * (theta - theta[-1]))  # outermost chamber centre at radius 1
    size = r * rng.uniform(0.5, 0.62)
    # fit the outermost chamber within the unit disc
    fit = 0.95 / (r[-1] + size[-1])
    r, size = r * fit, size * fit
    body = int(rng.uniform(120, 190))
    wall = rng.uniform(0.015, 0.03)
    infl = rng.uniform(0.75, 1.0)  # chamber inflation (aspect)
    for k in range(n_ch):
        cx, cy = r[k] * np.cos(theta[k]), r[k] * np.sin(theta[k])
        a = theta[k]
        ell = _circle(48, size[k] * infl, size[k])  # compressed radially
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        ch = ell @ rot.T + [cx, cy]
        cv.polygon(ch, body)
        cv.line(ch, 240, wall, closed=True)
    if rng.random() < 0.6:  # aperture / umbilicus
        cv.disc(0, 0, size[0] * 1.2, 250)


def _ostracod(cv: _Canvas, rng: np.random.Generator) -> None:
    """An ostracod valve in lateral view: bean outline, thick marginal rim, pitted or ribbed surface."""
    elong = rng.uniform(1.5, 2.2)
    t = np.linspace(0, 2 * np.pi, 160, endpoint=False)
    H = 1.0 / elong
    asym = rng.uniform(0.08, 0.22)  # anterior end higher than posterior
    sinus = rng.uniform(0.0, 0.18)  # ventral concavity
    x = np.cos(t)
    y = H * np.sin(t) * (1 + asym * np.cos(t))
    y = np.where(y < 0, y + sinus * H * np.exp(-(x / 0.35) ** 2), y)
    outline = np.stack([x, y], 1)
    body = int(rng.uniform(110, 180))
    cv.polygon(outline, body)
    ornament = rng.choice(["pits", "ribs", "smooth"], p=[0.5, 0.3, 0.2])
    if ornament == "pits":
        step = rng.uniform(0.07, 0.11)
        for yy in np.arange(-H, H, step):
            for xx in np.arange(-1, 1, step):
                inside = (xx / 0.88) ** 2 + (yy / (0.8 * H * (1 + asym * xx))) ** 2 < 1
                if inside:
                    cv.disc(xx + rng.normal(0, step * 0.08), yy + rng.normal(0, step * 0.08), step * 0.28, body // 3)
    elif ornament == "ribs":
        for s in np.linspace(0.3, 0.85, int(rng.integers(3, 6))):
            cv.line(np.stack([x * s, y * s * 0.95], 1), 235, 0.02, closed=True)
    cv.line(outline, 250, rng.uniform(0.03, 0.06), closed=True)
    # hinge line along the dorsal margin and an eye tubercle
    hx = np.linspace(-0.55, 0.55, 20)
    cv.line(np.stack([hx, np.full_like(hx, H * 0.78)], 1), 220, 0.02)
    if rng.random() < 0.6:
        cv.disc(0.55, H * 0.45, 0.05, 250)


def _diatom(cv: _Canvas, rng: np.random.Generator) -> None:
    """A centric diatom valve: disc with radial striae of areolae, central area and marginal ring."""
    R = 0.95
    ry = rng.uniform(0.92, 1.0)
    body = int(rng.uniform(50, 110))
    cv.polygon(_circle(160, R, R * ry), body)
    n_striae = int(rng.integers(28, 56))
    central = R * rng.uniform(0.12, 0.3)
    dot = rng.uniform(0.012, 0.02)
    step = dot * rng.uniform(2.6, 3.4)
    sectors = int(rng.choice([0, 0, 6, 8]))  # some valves are sectored (Actinoptychus-like)
    for k in range(n_striae):
        a = 2 * np.pi * k / n_striae
        start = central * (1.0 + 0.4 * ((k % 2) if rng.random() < 0.5 else 0))
        rr = np.arange(start, R * 0.93, step)
        xs, ys = rr * np.cos(a), rr * np.sin(a) * ry
        for x, y in zip(xs, ys):
            cv.disc(x, y, dot, 235)
    if sectors:
        for k in range(sectors):
            if k % 2:
                a1, a2 = 2 * np.pi * k / sectors, 2 * np.pi * (k + 1) / sectors
                aa = np.linspace(a1, a2, 12)
                wedge = np.concatenate([[[0, 0]], np.stack([R * 0.93 * np.cos(aa), R * 0.93 * ry * np.sin(aa)], 1)])
                cv.line(wedge, 200, 0.012, closed=True)
    cv.disc(0, 0, central * 0.9, body // 2)
    if rng.random() < 0.6:  # central rosette
        for k in range(int(rng.integers(5, 9))):
            a = 2 * np.pi * k / 7
            cv.disc(central * 0.45 * np.cos(a), central * 0.45 * np.sin(a), dot * 1.3, 240)
    cv.line(_circle(160, R, R * ry), 250, rng.uniform(0.025, 0.045), closed=True)
    cv.line(_circle(160, R * 0.95, R * 0.95 * ry), 180, 0.01, closed=True)


#: The morphotypes, in class order: folder name -> drawing function.
MORPHOTYPES: dict[str, Callable[[_Canvas, np.random.Generator], None]] = {
    "fusulinid": _fusulinid,
    "radiolarian": _radiolarian,
    "coiled_foram": _coiled_foram,
    "ostracod": _ostracod,
    "diatom": _diatom,
}


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [0, 1], (size, size) float32: a random (cells x cells) grid upsampled bicubically."""
    grid = (rng.random((cells, cells)) * 255).astype(np.uint8)
    up = Image.fromarray(grid, "L").resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(up, dtype=np.float32) / 255.0


def render_specimen(morphotype: str, rng: np.random.Generator, size: int = 160) -> Image.Image:
    """Draw one specimen of ``morphotype`` (a key of :data:`MORPHOTYPES`) as a ``size`` x ``size`` RGB image.

    Every random choice comes from ``rng``. The specimen's half-size is 30-44 %
    of the image side; rotation is uniform; the centre jitters with a standard deviation of 3 % of the side.
    """
    if morphotype not in MORPHOTYPES:
        raise ValueError(f"unknown morphotype {morphotype!r}; choose from {sorted(MORPHOTYPES)}")
    # placement and imaging style are drawn first, identically for every morphotype
    scale = size * rng.uniform(0.30, 0.44)
    angle = rng.uniform(0, 2 * np.pi)
    centre = (size / 2 + rng.normal(0, size * 0.03), size / 2 + rng.normal(0, size * 0.03))
    flip = bool(rng.random() < 0.5)
    style = _STYLES[int(rng.integers(len(_STYLES)))]
    contrast = rng.uniform(0.65, 1.0)
    blur = rng.uniform(0.0, 1.1)
    noise_sd = rng.uniform(2.0, 9.0)
    n_debris = int(rng.integers(0, 12))

    cv = _Canvas(size, scale, angle, centre, flip)
    MORPHOTYPES[morphotype](cv, rng)
    ink = cv.result()

    # shell texture (uneven preservation) and background debris
    texture = 0.7 + 0.6 * _smooth_noise(rng, size, int(rng.integers(6, 16)))
    ink = np.clip(ink * texture, 0, 1)
    if n_debris:
        deb = Image.new("L", (size, size), 0)
        dd = ImageDraw.Draw(deb)
        for _ in range(n_debris):
            x, y = rng.uniform(0, size, 2)
            r = rng.uniform(0.5, 2.5)
            dd.ellipse([x - r, y - r, x + r, y + r], fill=int(rng.uniform(60, 200)))
        ink = np.maximum(ink, np.asarray(deb, dtype=np.float32) / 255.0)
    ink = ink * contrast

    bg = np.array(style["bg"], dtype=np.float32)
    fg = np.array(style["ink"], dtype=np.float32)
    shade = 0.9 + 0.2 * _smooth_noise(rng, size, 3)  # uneven illumination
    base = bg[None, None, :] * shade[..., None]
    rgb = base * (1 - ink[..., None]) + fg[None, None, :] * ink[..., None]
    img = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")
    if blur > 0.15:
        img = img.filter(ImageFilter.GaussianBlur(blur))
    arr = np.asarray(img, dtype=np.float32) + rng.normal(0, noise_sd, (size, size, 1))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def make_example_dataset(
    root: str | os.PathLike,
    n_per_class: int = 20,
    seed: int = 0,
    size: int = 160,
    morphotypes: list[str] | None = None,
    quality: int = 85,
) -> Path:
    """Write a class-folder dataset of procedurally drawn microfossil-like images.

    Parameters
    ----------
    root : folder to write; ``root/<morphotype>/<morphotype>_NNN.jpg`` (created,
        existing files of the same names are overwritten, other files are left alone)
    n_per_class : images per morphotype
    seed : the random seed; the same seed gives the same images
    size : image side in pixels (square RGB JPEGs)
    morphotypes : which morphotypes (keys of :data:`MORPHOTYPES`), default all five
    quality : JPEG quality (1-95)

    Returns ``root`` as a Path. Image ``i`` of class ``c`` depends only on
    ``(seed, c's position in MORPHOTYPES, i, size)``.
    """
    if n_per_class < 1:
        raise ValueError("n_per_class must be at least 1")
    if size < 32:
        raise ValueError("size must be at least 32 pixels")
    names = list(MORPHOTYPES) if morphotypes is None else list(morphotypes)
    unknown = [m for m in names if m not in MORPHOTYPES]
    if unknown:
        raise ValueError(f"unknown morphotypes {unknown}; choose from {sorted(MORPHOTYPES)}")
    root = Path(root)
    order = list(MORPHOTYPES)
    for name in names:
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        c = order.index(name)
        for i in range(n_per_class):
            rng = np.random.default_rng([int(seed), c, i])
            img = render_specimen(name, rng, size=size)
            img.save(folder / f"{name}_{i:03d}.jpg", format="JPEG", quality=int(quality))
    return root


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m palaeo_ssl.synthetic",
        description="Write the synthetic example dataset (procedurally drawn microfossil-like images).",
    )
    parser.add_argument("root", help="output folder, e.g. data/example")
    parser.add_argument("--n-per-class", type=int, default=20, help="images per morphotype (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--size", type=int, default=160, help="image side in pixels (default 160)")
    args = parser.parse_args(argv)
    root = make_example_dataset(args.root, n_per_class=args.n_per_class, seed=args.seed, size=args.size)
    files = sorted(root.rglob("*.jpg"))
    total = sum(f.stat().st_size for f in files)
    print(f"wrote {len(files)} images ({total / 1e6:.2f} MB) to {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
