"""The built-in dataset: people-like identities seen through several cameras, rendered on torch ops.

It lets the tool train and evaluate with no download, and it is meant to be *hard enough that
model capacity matters*: identity colours come from small palettes, so many people share a
torso or trouser colour and differ only by texture (stripes / checks / bands with their own
frequency and orientation), sleeves, trouser type, bag, hair, logo and body shape; each camera
adds a strong colour cast, its own brightness / contrast / tone curve, blur, scene and preferred
viewpoint (front / back / side change what is visible: face, logo, backpack); each image adds
scale / position jitter, a random mirror, walking pose, background clutter, a partial occluder
and pixel noise. A nearest neighbour on mean colours does poorly; see ``tests/data``.

Layout: identity ``g`` (pid ``g + 1``) appears in every camera, ``images_per_id_per_camera``
times; image ``index = (g * num_cameras + c) * images_per_id_per_camera + k`` is path
``synthetic://{seed}/{index}``. Pixels depend only on (config, index): identity, camera and image
draw from their own ``torch.Generator`` seeded from (seed, pid), (seed, camera), (seed, index),
and rendering uses only exactly rounded arithmetic (no exp / sin), so an image has the same bytes
whether it is rendered alone or in any batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch

from sfsc_deploy.data.records import Record, ReidSplits, heldout_splits
from sfsc_deploy.data.sources import register_renderer
from sfsc_deploy.errors import SfscError

SCHEME = "synthetic://"
_CHUNK = 128  # images rendered together: keeps the working set in cache

# Small palettes on purpose: shared colours force the model to look at texture and parts.
UPPER = [(0.75, 0.12, 0.12), (0.12, 0.18, 0.45), (0.88, 0.88, 0.86), (0.10, 0.10, 0.11),
         (0.20, 0.50, 0.25), (0.90, 0.78, 0.20), (0.50, 0.50, 0.52), (0.45, 0.65, 0.85)]  # fmt: skip
LOWER = [(0.20, 0.27, 0.45), (0.08, 0.08, 0.10), (0.45, 0.45, 0.47), (0.65, 0.58, 0.42),
         (0.85, 0.85, 0.82), (0.40, 0.27, 0.17)]  # fmt: skip
SKIN = [(0.95, 0.80, 0.68), (0.85, 0.65, 0.50), (0.60, 0.42, 0.30), (0.38, 0.25, 0.18)]
HAIR = [(0.06, 0.05, 0.05), (0.22, 0.13, 0.08), (0.45, 0.30, 0.18), (0.85, 0.72, 0.45), (0.60, 0.60, 0.60)]
SHOES = [(0.07, 0.07, 0.07), (0.90, 0.90, 0.90), (0.35, 0.22, 0.12), (0.45, 0.45, 0.45)]
BAGS = [(0.08, 0.08, 0.08), (0.40, 0.25, 0.12), (0.70, 0.10, 0.15), (0.12, 0.15, 0.40), (0.50, 0.50, 0.50),
        (0.90, 0.55, 0.70)]  # fmt: skip


@dataclass
class SyntheticConfig:
    """The synthetic dataset. Defaults: 100 train + 50 test ids x 4 cameras x 3 images = 1,800 images."""

    seed: int = 0
    num_train_ids: int = 100
    num_test_ids: int = 50
    num_cameras: int = 4
    images_per_id_per_camera: int = 3
    height: int = 128
    width: int = 64

    def check(self) -> SyntheticConfig:
        if self.num_train_ids < 1 or self.num_test_ids < 1:
            raise SfscError("synthetic data needs at least 1 train and 1 test identity; raise the id counts")
        if self.num_cameras < 2 or self.images_per_id_per_camera < 1:
            raise SfscError("synthetic data needs >= 2 cameras and >= 1 image per camera; raise them")
        if self.height < 16 or self.width < 8:
            raise SfscError(f"synthetic image size {self.height}x{self.width} too small; use >= 16x8")
        return self


def config_key(cfg: SyntheticConfig) -> str:
    """The whole config in the record path, so records always render with the config that made them."""
    return (
        f"{cfg.seed},{cfg.num_train_ids},{cfg.num_test_ids},{cfg.num_cameras},"
        f"{cfg.images_per_id_per_camera},{cfg.height}x{cfg.width}"
    )


def synthetic_splits(cfg: SyntheticConfig | None = None) -> ReidSplits:
    """Train ids ``1..num_train_ids`` (relabelled), test ids after them split by the held-out query rule.

    Paths are ``synthetic://{config}/{index}``: :func:`render_records` (used by the image bank) turns
    them back into pixels without any global state.
    """
    cfg = (cfg or SyntheticConfig()).check()
    key = config_key(cfg)
    records = []
    per_id = cfg.num_cameras * cfg.images_per_id_per_camera
    for g in range(cfg.num_train_ids + cfg.num_test_ids):
        for j in range(per_id):
            camid = j // cfg.images_per_id_per_camera + 1
            records.append(Record(f"{SCHEME}{key}/{g * per_id + j}", g + 1, camid))
    return heldout_splits("synthetic", records, cfg.num_test_ids)


def parse_path(path: str) -> tuple[SyntheticConfig, int] | None:
    """(config, index) of a ``synthetic://{config}/{index}`` path, or None for a file path."""
    if not path.startswith(SCHEME):
        return None
    key, _, index = path[len(SCHEME) :].partition("/")
    seed, train, test, cams, per_cam, size = key.split(",")
    height, width = size.split("x")
    cfg = SyntheticConfig(int(seed), int(train), int(test), int(cams), int(per_cam), int(height), int(width))
    return cfg, int(index)


def render_records(records: list[Record]) -> torch.Tensor:
    """uint8 [N, 3, H, W] of synthetic records (all of one config)."""
    keys = [parse_path(r.path) for r in records]
    if any(k is None for k in keys):
        raise ValueError("render_records got a record that is not synthetic://")
    configs = {config_key(k[0]) for k in keys}  # type: ignore[index]
    if len(configs) != 1:
        raise ValueError(f"records of several synthetic configs {sorted(configs)} in one call")
    cfg = keys[0][0]  # type: ignore[index]
    return render_batch(cfg, [k[1] for k in keys])  # type: ignore[index]


def render(cfg: SyntheticConfig, index: int) -> torch.Tensor:
    """uint8 [3, H, W]: image ``index`` of the dataset ``cfg``."""
    return render_batch(cfg, [index])[0]


def render_batch(cfg: SyntheticConfig, indices) -> torch.Tensor:
    """uint8 [N, 3, H, W]: the images ``indices`` of ``cfg`` (same bytes as one :func:`render` each)."""
    cfg.check()
    indices = [int(i) for i in indices]
    out = torch.empty(len(indices), 3, cfg.height, cfg.width, dtype=torch.uint8)
    with torch.no_grad():
        for s in range(0, len(indices), _CHUNK):
            out[s : s + _CHUNK] = _render_chunk(cfg, indices[s : s + _CHUNK])
    return out


# --------------------------------------------------------------------------------------- parameters


def _mix(*parts: int) -> int:
    """A 63-bit seed from integers (splitmix64 rounds), stable across runs and platforms."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = (h ^ (p & 0xFFFFFFFFFFFFFFFF)) & 0xFFFFFFFFFFFFFFFF
        h = (h + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h >> 1


class _Draw:
    """Sequential uniforms from one seeded generator, with the few shapes of draw we need."""

    def __init__(self, gen: torch.Generator, n: int = 96):
        self.values = torch.rand(n, generator=gen, dtype=torch.float64).tolist()
        self.i = 0

    def u(self, lo: float = 0.0, hi: float = 1.0) -> float:
        self.i += 1
        return lo + (hi - lo) * self.values[self.i - 1]

    def pick(self, n: int) -> int:
        return min(int(self.u() * n), n - 1)

    def colour(self, palette, jitter: float = 0.04) -> tuple[float, float, float]:
        c = palette[self.pick(len(palette))]
        return tuple(min(1.0, max(0.0, v + self.u(-jitter, jitter))) for v in c)  # type: ignore[return-value]


def _gen(*parts: int) -> torch.Generator:
    return torch.Generator().manual_seed(_mix(*parts))


@lru_cache(maxsize=8192)
def _identity(seed: int, pid: int) -> dict:
    d = _Draw(_gen(seed, 1, pid))
    upper1 = d.pick(len(UPPER))
    upper2 = (upper1 + 1 + d.pick(len(UPPER) - 1)) % len(UPPER)
    texture = d.pick(5)  # 0 solid, 1 stripes, 2 checks, 3 chest band, 4 two-tone
    angle = [90.0, 0.0, 45.0, -45.0][d.pick(4)] + d.u(-10, 10)
    freq = d.u(7.0, 18.0)  # cycles per figure height: 2.5-7 stripes across the torso
    lower = d.pick(3)  # 0 trousers, 1 shorts, 2 skirt
    bag = d.pick(5)  # 0, 1 none, 2 backpack, 3 shoulder bag, 4 handbag
    return {
        "height": d.u(0.84, 1.0),
        "width": d.u(0.8, 1.25),
        "skin": d.colour(SKIN),
        "hair": d.colour(HAIR),
        "long_hair": float(d.u() < 0.35),
        "upper1": tuple(v + d.u(-0.04, 0.04) for v in UPPER[upper1]),
        "upper2": tuple(v + d.u(-0.04, 0.04) for v in UPPER[upper2]),
        "tex": tuple(float(texture == t) for t in (1, 2, 3, 4)),
        "fu": freq * math.cos(math.radians(angle)),
        "fv": freq * math.sin(math.radians(angle)),
        "freq": freq,
        "duty": d.u(0.3, 0.65),
        "phase": d.u(),
        "band": d.u(0.22, 0.36),
        "long_sleeves": float(d.u() < 0.5),
        "lower": d.colour(LOWER),
        "lower_type": tuple(float(lower == t) for t in (0, 1, 2)),
        "shoes": d.colour(SHOES),
        "bag": tuple(float(bag == t) for t in (2, 3, 4)),
        "bag_colour": d.colour(BAGS),
        "bag_side": 1.0 if d.u() < 0.5 else -1.0,
        "logo": float(d.u() < 0.3),
        "logo_colour": d.colour(UPPER),
    }


@lru_cache(maxsize=1024)
def _camera(seed: int, cam: int) -> dict:
    d = _Draw(_gen(seed, 2, cam))
    wall = [d.u(0.25, 0.75) for _ in range(3)]
    return {
        "gain": tuple(d.u(0.62, 1.38) for _ in range(3)),  # strong colour cast
        "offset": d.u(-0.08, 0.08),
        "contrast": d.u(0.7, 1.2),
        "curve": d.u(-0.35, 0.35),
        "sigma": d.u(0.0, 1.3),
        "view": d.pick(3),  # preferred view: front, back, side
        "scale": d.u(0.78, 0.95),
        "aspect": d.u(0.88, 1.12),
        "wall": tuple(wall),
        "wall2": tuple(v * d.u(0.6, 1.0) for v in wall),
        "floor": tuple(d.u(0.2, 0.6) for _ in range(3)),
        "horizon": d.u(0.6, 0.8),
    }


def _image(seed: int, index: int, size: tuple[int, int], cam: dict) -> tuple[dict, torch.Tensor]:
    gen = _gen(seed, 3, index)
    d = _Draw(gen)
    view = cam["view"] if d.u() < 0.65 else d.pick(3)
    sigma = max(0.0, cam["sigma"] + d.u(-0.3, 0.3)) * size[0] / 128
    scale = cam["scale"] * d.u(0.9, 1.06)
    p = {
        "view": tuple(float(view == v) for v in (0, 1, 2)),
        "flip": 1.0 if d.u() < 0.5 else -1.0,
        "scale": scale,
        "top": d.u(-0.02, max(-0.01, 1.0 - scale - 0.01)),
        "cx": d.u(-0.07, 0.07),
        "stride": d.u(0.0, 0.06),
        "bright": d.u(0.9, 1.1),
        "phase": d.u(-0.06, 0.06),
        "noise": d.u(0.01, 0.05),
        "blur": _gauss(sigma),
        "occ": float(d.u() < 0.35),
        "occ_box": _occluder(d),
        "occ_colour": _clutter_colour(d, cam),
    }
    for j in range(5):
        p[f"clut{j}"] = (d.u(-0.3, 0.3), d.u(0.0, 1.0), d.u(0.02, 0.15), d.u(0.02, 0.3))
        p[f"clut{j}_colour"] = _clutter_colour(d, cam)
    noise = torch.randn(3, *size, generator=gen)
    return p, noise


def _occluder(d: _Draw) -> tuple[float, float, float, float]:
    """(cx, cy, half width, half height) in image units: from the bottom, or from one side."""
    if d.u() < 0.5:
        top = d.u(0.65, 0.85)
        return (d.u(-0.15, 0.15), (top + 1.2) / 2, d.u(0.15, 0.3), (1.2 - top) / 2)
    side = 1.0 if d.u() < 0.5 else -1.0
    hw = d.u(0.05, 0.12)
    return (side * (0.27 - hw * 0.6), d.u(0.3, 0.7), hw, d.u(0.2, 0.45))


def _clutter_colour(d: _Draw, cam: dict) -> tuple[float, float, float]:
    if d.u() < 0.35:  # a person-like colour in the scene, to confuse colour matching
        return d.colour(UPPER + LOWER, 0.08)
    base = cam["wall"] if d.u() < 0.5 else cam["floor"]
    return tuple(min(1.0, max(0.0, v + d.u(-0.15, 0.15))) for v in base)  # type: ignore[return-value]


def _gauss(sigma: float) -> tuple[float, float, float]:
    """Weights of a 5-tap Gaussian (centre, +-1, +-2), summing to one."""
    if sigma < 0.05:
        return (1.0, 0.0, 0.0)
    w = [math.exp(-(k * k) / (2 * sigma * sigma)) for k in range(3)]
    total = w[0] + 2 * (w[1] + w[2])
    return (w[0] / total, w[1] / total, w[2] / total)


def _decode(cfg: SyntheticConfig, index: int) -> tuple[int, int, int]:
    """(identity g, camera c, image k), all 0-based, of an image index."""
    per_cam = cfg.images_per_id_per_camera
    return index // (cfg.num_cameras * per_cam), (index // per_cam) % cfg.num_cameras, index % per_cam


def _stack(dicts: list[dict]) -> dict[str, torch.Tensor]:
    """Per key a float tensor [N, 1, 1, 1], or [N, C, 1, 1] for tuple values."""
    out = {}
    for key in dicts[0]:
        t = torch.tensor([d[key] for d in dicts], dtype=torch.float32)
        out[key] = t.view(len(dicts), -1, 1, 1)
    return out


# ------------------------------------------------------------------------------------------ drawing


def _band(t: torch.Tensor, lo, hi, e) -> torch.Tensor:
    """Soft indicator of lo <= t <= hi, edges one pixel wide (``e`` = pixels per unit of t)."""
    return ((t - lo) * e + 0.5).clamp(0, 1) * ((hi - t) * e + 0.5).clamp(0, 1)


def _paint(canvas: torch.Tensor, mask: torch.Tensor, colour: torch.Tensor) -> None:
    canvas.add_(mask * (colour - canvas))


def _square(t: torch.Tensor, duty, sharp) -> torch.Tensor:
    """Soft square wave of period 1 (triangle wave thresholded), exact arithmetic only."""
    tri = (2 * (t - t.floor()) - 1).abs()
    return ((tri - duty) * sharp + 0.5).clamp(0, 1)


def _render_chunk(cfg: SyntheticConfig, indices: list[int]) -> torch.Tensor:
    n, H, W = len(indices), cfg.height, cfg.width
    parts = [_decode(cfg, i) for i in indices]
    ident = _stack([_identity(cfg.seed, g + 1) for g, _, _ in parts])
    cams = [_camera(cfg.seed, c + 1) for _, c, _ in parts]
    images = [_image(cfg.seed, i, (H, W), cam) for i, cam in zip(indices, cams, strict=True)]
    cam, img = _stack(cams), _stack([p for p, _ in images])
    noise = torch.stack([z for _, z in images])

    # image coordinates in units of the image height, x centred
    y = ((torch.arange(H, dtype=torch.float32) + 0.5) / H).view(1, 1, H, 1)
    x = ((torch.arange(W, dtype=torch.float32) + 0.5 - W / 2) / H).view(1, 1, 1, W)

    # scene: wall gradient, floor, clutter shapes
    canvas = (cam["wall"] + (cam["wall2"] - cam["wall"]) * y).expand(n, 3, H, W).contiguous()
    _paint(canvas, ((y - cam["horizon"]) * H + 0.5).clamp(0, 1), cam["floor"])
    for j in range(5):
        cx, cy, hw, hh = img[f"clut{j}"].unbind(1)
        cx, cy, hw, hh = (v.unsqueeze(1) for v in (cx, cy, hw, hh))
        _paint(canvas, _band(x, cx - hw, cx + hw, H) * _band(y, cy - hh, cy + hh, H), img[f"clut{j}_colour"])

    # figure coordinates: figure height 1, u mirrored per image, e = pixels per figure unit
    fh = img["scale"] * ident["height"]
    e = fh * H
    u = (x - img["cx"]) / (fh * cam["aspect"]) * img["flip"]
    v = (y - img["top"]) / fh
    front, back, side = img["view"].unbind(1)
    front, back, side = front.unsqueeze(1), back.unsqueeze(1), side.unsqueeze(1)
    width = ident["width"] * (1 - 0.3 * side)
    top_w, bot_w = 0.13 * width, 0.115 * width
    skin, hair, bag_c = ident["skin"], ident["hair"], ident["bag_colour"]
    backpack, shoulder, handbag = (t.unsqueeze(1) for t in ident["bag"].unbind(1))
    bag_side = ident["bag_side"]

    # behind the body: a backpack seen from the side
    pack_u = _band(u, -top_w - 0.08, -top_w + 0.03, e) * _band(v, 0.17, 0.44, e)
    _paint(canvas, pack_u * (backpack * side), bag_c)

    # legs (skin), trousers / shorts, skirt, shoes
    leg_off = 0.06 * width + img["stride"]
    legs_u = torch.maximum(
        _band(u, -leg_off - 0.05, -leg_off + 0.05, e), _band(u, leg_off - 0.05, leg_off + 0.05, e)
    )
    _paint(canvas, legs_u * _band(v, 0.5, 0.95, e), skin)
    trousers, shorts, skirt = (t.unsqueeze(1) for t in ident["lower_type"].unbind(1))
    cut = 0.95 * trousers + 0.7 * shorts + 0.5 * skirt
    _paint(canvas, legs_u * _band(v, 0.5, cut, e) * (1 - skirt), ident["lower"])
    skirt_hw = 0.115 * width + (v - 0.5) * 0.25
    skirt_mask = ((skirt_hw - u.abs()) * e + 0.5).clamp(0, 1) * _band(v, 0.5, 0.72, e)
    _paint(canvas, skirt_mask * skirt, ident["lower"])
    _paint(canvas, legs_u * _band(v, 0.94, 0.99, e), ident["shoes"])

    # torso with its texture
    torso_hw = top_w + (bot_w - top_w) * (v - 0.15) / 0.37
    torso = ((torso_hw - u.abs()) * e + 0.5).clamp(0, 1) * _band(v, 0.15, 0.53, e)
    sharp = (e / (2 * ident["freq"])).clamp(min=1.0)
    phase = ident["phase"] + img["phase"]
    stripes, checks, chest, two_tone = (t.unsqueeze(1) for t in ident["tex"].unbind(1))
    pattern = stripes * _square(ident["fu"] * u + ident["fv"] * v + phase, ident["duty"], sharp)
    sq_u = _square(ident["freq"] * 0.7 * u + phase, 0.5, sharp)
    sq_v = _square(ident["freq"] * 0.7 * v + phase, 0.5, sharp)
    pattern = pattern + checks * (sq_u - sq_v).abs()
    pattern = pattern + chest * _band(v, ident["band"], ident["band"] + 0.06, e)
    pattern = pattern + two_tone * ((v - ident["band"] - 0.05) * e + 0.5).clamp(0, 1)
    upper1, upper2 = ident["upper1"], ident["upper2"]
    _paint(canvas, torso, upper1 + pattern * (upper2 - upper1))

    # arms: skin, then sleeves; two at the sides (front/back) or one swinging (side)
    arm_c = top_w + 0.03
    arms_u = torch.maximum(
        _band(u, -arm_c - 0.028, -arm_c + 0.028, e), _band(u, arm_c - 0.028, arm_c + 0.028, e)
    )
    side_arm = _band(u, img["stride"] - 0.03, img["stride"] + 0.03, e)
    arms_u = arms_u + side * (side_arm - arms_u)
    sleeve = 0.26 + (0.48 - 0.26) * ident["long_sleeves"]
    _paint(canvas, arms_u * _band(v, 0.16, 0.54, e), skin)
    _paint(canvas, arms_u * _band(v, 0.16, sleeve, e), upper1)

    # bags on top of the body: backpack (back) or straps (front), shoulder bag with strap, handbag
    pack = _band(u, -0.09 * width, 0.09 * width, e) * _band(v, 0.17, 0.44, e)
    straps = torch.maximum(_band(u, -0.082, -0.058, e), _band(u, 0.058, 0.082, e)) * _band(v, 0.15, 0.4, e)
    _paint(canvas, backpack * (back * pack + front * straps), bag_c)
    su = u * bag_side
    strap = _band(su - (0.09 - 0.5 * (v - 0.16)), -0.012, 0.012, e) * _band(v, 0.16, 0.44, e) * (1 - side)
    purse = _band(su, top_w + 0.01, top_w + 0.1, e) * _band(v, 0.4, 0.55, e)
    _paint(canvas, shoulder * torch.maximum(strap, purse), bag_c)
    hand = _band(su, arm_c - 0.03, arm_c + 0.05, e) * _band(v, 0.52, 0.62, e)
    _paint(canvas, handbag * hand, bag_c)
    logo = ident["logo"] * front * _band(u, -0.035, 0.035, e) * _band(v, 0.22, 0.29, e)
    _paint(canvas, logo, ident["logo_colour"])

    # head: face, hair (all of it from behind), long hair over the shoulders
    head = ((1 - (u / 0.06).square() - ((v - 0.085) / 0.075).square()) * e * 0.03 + 0.5).clamp(0, 1)
    _paint(canvas, head, skin)
    hairline = 0.055 + 0.11 * back + 0.015 * side
    _paint(canvas, head * ((hairline - v) * e + 0.5).clamp(0, 1), hair)
    long_back = _band(u, -0.065, 0.065, e) * _band(v, 0.05, 0.24, e) * back
    long_front = torch.maximum(_band(u, -0.07, -0.045, e), _band(u, 0.045, 0.07, e)) * _band(v, 0.06, 0.2, e)
    _paint(canvas, ident["long_hair"] * torch.maximum(long_back, long_front * (1 - back)), hair)

    # occluder in front of the person
    ox, oy, ow, oh = (t.unsqueeze(1) for t in img["occ_box"].unbind(1))
    occluder = img["occ"] * _band(x, ox - ow, ox + ow, H) * _band(y, oy - oh, oy + oh, H)
    _paint(canvas, occluder, img["occ_colour"])

    # camera: colour cast, brightness, contrast, tone curve, blur; then sensor noise
    canvas = canvas * (cam["gain"] * img["bright"])
    canvas = ((canvas - 0.5) * cam["contrast"] + 0.5 + cam["offset"]).clamp(0, 1)
    canvas = canvas + cam["curve"] * canvas * (1 - canvas)
    canvas = _blur(canvas, img["blur"])
    canvas = canvas + noise * img["noise"]
    return (canvas.clamp(0, 1) * 255).round().to(torch.uint8)


def _blur(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Separable 5-tap blur with per-image weights [N, 3, 1, 1] (centre, +-1, +-2), edges replicated."""
    w0, w1, w2 = (t.unsqueeze(1) for t in weights.unbind(1))
    H, W = x.shape[-2:]
    p = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="replicate")
    rows = w0 * p[..., 2 : H + 2, :] + w1 * (p[..., 1 : H + 1, :] + p[..., 3 : H + 3, :])
    rows = rows + w2 * (p[..., 0:H, :] + p[..., 4 : H + 4, :])
    out = w0 * rows[..., 2 : W + 2] + w1 * (rows[..., 1 : W + 1] + rows[..., 3 : W + 3])
    return out + w2 * (rows[..., 0:W] + rows[..., 4 : W + 4])


register_renderer(SCHEME, render_records)
