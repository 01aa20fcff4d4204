"""Procedural 3-D objects for the embedded 3DIEBench stand-in: 10 classes of triangle meshes built from boxes,
cylinders, cones and prisms in numpy.

Each class is a category, not a single mesh: an instance draws its part proportions from a seeded RNG
(:func:`make_mesh`), so the class must be recognised from the shape. Every class is chosen so that no rotation
maps an instance onto itself (at most one mirror plane, counting the part colours; two perpendicular mirror planes
would make a 180-degree symmetry), so the pose, hence the relative rotation between two views, is recoverable
from the images:

==========  ==========================================================================================
class       parts (role: 0 main, 1 second, 2 third, 3 detail)
==========  ==========================================================================================
l_block     post (0) on the end of a longer, deeper foot (1), both flush at the back: no mirror plane
t_block     stem (0) under a crossbar (1), flush at the back: one mirror plane (left/right)
chair       seat (0), backrest (1), four legs (2)
desk        top (0), two legs (2) on the left, a cabinet (1) with a drawer front (3) on the right
mug         body (0) with a coloured top (2), a handle (1) with a thicker upper arm
house       walls (0) and a lower wing (0), gable roof (1), chimney (2) at the back, door (3) at the front
bottle      body (0) with a label (3) on the front, neck (1) off the axis, cap (2)
airplane    fuselage (0), wings (1), tail fin on top and stabilisers (2), nose cone (3)
lamp        round base (0), pole and arm (1), cone shade (2) hanging at the arm's end
stairs      three or four steps (0), a railing (1) along one side
==========  ==========================================================================================

Colours come per part role from a palette shared by all classes (:func:`palette`): with ``random_hue`` each
instance rotates the palette's hue, so colour alone carries little class information and the part colours
still differ within an object (which makes its orientation visible). Meshes are centred on their bounding box
and scaled so that every vertex lies in the unit ball: rendered at any pose, the object stays inside the image.
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

CLASSES: tuple[str, ...] = ("l_block", "t_block", "chair", "desk", "mug", "house", "bottle", "airplane", "lamp",
                            "stairs")
NUM_ROLES = 4
# Per role: hue offset from the instance's hue, saturation, value. Shared by every class.
_ROLE_HSV = ((0.0, 0.55, 0.92), (0.33, 0.65, 0.78), (0.62, 0.45, 0.62), (0.12, 0.85, 0.98))
BOX_FACES = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                       [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])


@dataclass(frozen=True)
class Mesh:
    """A triangle mesh: ``vertices`` float32 ``[V, 3]`` (in the unit ball), ``faces`` int64 ``[F, 3]`` (vertex
    indices), ``roles`` int64 ``[F]`` (the part role of each face) and ``colors`` float32 ``[NUM_ROLES, 3]`` (RGB in
    ``[0, 1]`` per role). The winding of the faces is arbitrary (the renderer lights both sides)."""

    vertices: np.ndarray
    faces: np.ndarray
    roles: np.ndarray
    colors: np.ndarray

    @property
    def face_colors(self) -> np.ndarray:
        """RGB ``[F, 3]`` of each face."""
        return self.colors[self.roles]


class _Parts:
    """Collects primitives (vertices, faces) with their role; :meth:`mesh` concatenates and normalizes."""

    def __init__(self) -> None:
        self.vertices: list[np.ndarray] = []
        self.faces: list[np.ndarray] = []
        self.roles: list[np.ndarray] = []
        self._count = 0

    def add(self, vertices: np.ndarray, faces: np.ndarray, role: int) -> None:
        self.vertices.append(vertices)
        self.faces.append(faces + self._count)
        self.roles.append(np.full(len(faces), role))
        self._count += len(vertices)

    def box(self, lo: tuple[float, float, float], hi: tuple[float, float, float], role: int,
            tilt: float = 0.0) -> None:
        """Axis-aligned box ``lo``..``hi``, optionally turned by ``tilt`` radians about the z axis at ``lo``."""
        bits = np.array([[i >> 2 & 1, i >> 1 & 1, i & 1] for i in range(8)], dtype=np.float64)  # x, y, z bits
        v = np.asarray(lo) + bits * (np.asarray(hi) - np.asarray(lo))
        if tilt:
            c, s = np.cos(tilt), np.sin(tilt)
            d = v - np.asarray(lo)
            v = np.asarray(lo) + np.stack([c * d[:, 0] - s * d[:, 1], s * d[:, 0] + c * d[:, 1], d[:, 2]], -1)
        self.add(v, BOX_FACES, role)

    def ring(self, centre: tuple[float, float, float], radius: float, y0: float, y1: float, role: int,
             top_role: int | None = None, n: int = 10, radius_top: float | None = None) -> None:
        """A closed cylinder (or a frustum / cone with ``radius_top``) along y from ``y0`` to ``y1`` around
        ``centre`` (its y ignored); the top cap gets ``top_role`` (default ``role``)."""
        t = 2 * np.pi * np.arange(n) / n
        rt = radius if radius_top is None else radius_top
        ring = np.stack([np.cos(t), np.zeros(n), np.sin(t)], -1)
        base = np.array([centre[0], 0.0, centre[2]])
        v = np.concatenate([base + ring * radius + [0, y0, 0], base + ring * rt + [0, y1, 0],
                            [base + [0, y0, 0], base + [0, y1, 0]]])
        i, j = np.arange(n), (np.arange(n) + 1) % n
        side = np.concatenate([np.stack([i, j, n + j], -1), np.stack([i, n + j, n + i], -1)])
        self.add(v, np.concatenate([side, np.stack([np.full(n, 2 * n), j, i], -1)]), role)
        if rt > 0:  # the top cap, its own part so that it can take another colour
            self.add(v, np.stack([np.full(n, 2 * n + 1), n + i, n + j], -1),
                     role if top_role is None else top_role)

    def prism(self, x0: float, x1: float, z0: float, z1: float, y0: float, y1: float, role: int) -> None:
        """A gable roof: triangular prism along x, base ``z0..z1`` at height ``y0``, ridge at ``y1``."""
        tri = np.array([[0, y0, z0], [0, y0, z1], [0, y1, (z0 + z1) / 2]])
        v = np.concatenate([tri + [x0, 0, 0], tri + [x1, 0, 0]])
        f = np.array([[0, 1, 2], [3, 5, 4], [0, 3, 4], [0, 4, 1], [1, 4, 5], [1, 5, 2], [2, 5, 3], [2, 3, 0]])
        self.add(v, f, role)

    def mesh(self, colors: np.ndarray) -> Mesh:
        v = np.concatenate(self.vertices)
        v = v - (v.min(0) + v.max(0)) / 2
        v = v / np.linalg.norm(v, axis=1).max()
        return Mesh(v.astype(np.float32), np.concatenate(self.faces).astype(np.int64),
                    np.concatenate(self.roles).astype(np.int64), colors.astype(np.float32))


def _l_block(p: _Parts, u: Callable[[float, float], float]) -> None:
    t, h, length, depth = u(0.25, 0.4), u(0.9, 1.3), u(1.5, 2.0), u(0.6, 0.9)
    p.box((0, 0, 0), (t, h, depth * u(0.45, 0.7)), 0)
    p.box((0, -u(0.2, 0.35), 0), (length, 0, depth), 1)


def _t_block(p: _Parts, u: Callable[[float, float], float]) -> None:
    w, h, s, t, depth = u(1.4, 2.0), u(1.2, 1.8), u(0.25, 0.4), u(0.25, 0.4), u(0.5, 0.8)
    p.box((-s / 2, 0, 0), (s / 2, h - t, depth * u(0.4, 0.65)), 0)
    p.box((-w / 2, h - t, 0), (w / 2, h, depth), 1)


def _chair(p: _Parts, u: Callable[[float, float], float]) -> None:
    w, d, leg, seat, back, tl = u(0.8, 1.1), u(0.8, 1.1), u(0.7, 1.0), u(0.1, 0.16), u(0.7, 1.1), u(0.08, 0.12)
    p.box((-w / 2, leg, -d / 2), (w / 2, leg + seat, d / 2), 0)
    p.box((-w / 2, leg + seat, -d / 2), (w / 2, leg + seat + back, -d / 2 + u(0.1, 0.16)), 1)
    for x in (-w / 2, w / 2 - tl):
        for z in (-d / 2, d / 2 - tl):
            p.box((x, 0, z), (x + tl, leg, z + tl), 2)


def _desk(p: _Parts, u: Callable[[float, float], float]) -> None:
    w, d, h, top, tl, cab = u(1.6, 2.2), u(0.8, 1.1), u(0.8, 1.1), u(0.08, 0.14), u(0.08, 0.12), u(0.45, 0.7)
    p.box((-w / 2, h, -d / 2), (w / 2, h + top, d / 2), 0)
    for z in (-d / 2, d / 2 - tl):
        p.box((-w / 2, 0, z), (-w / 2 + tl, h, z + tl), 2)
    p.box((w / 2 - cab, 0, -d / 2), (w / 2, h, d / 2 * 0.9), 1)
    p.box((w / 2 - cab * 0.9, h * u(0.55, 0.7), d / 2 * 0.9), (w / 2 - cab * 0.1, h * 0.92, d / 2), 3)


def _mug(p: _Parts, u: Callable[[float, float], float]) -> None:
    r, h, g, t = u(0.45, 0.6), u(0.9, 1.4), u(0.35, 0.5), u(0.08, 0.12)
    p.ring((0, 0, 0), r, 0, h, 0, top_role=2)
    top, bottom = h * u(0.75, 0.85), h * u(0.15, 0.3)
    p.box((r * 0.8, top - 2 * t, -t), (r + g, top, t), 1)                    # thicker upper arm
    p.box((r * 0.8, bottom, -t), (r + g * 0.8, bottom + t, t), 1)
    p.box((r + g - t, bottom, -t), (r + g, top, t), 1)


def _house(p: _Parts, u: Callable[[float, float], float]) -> None:
    w, d, h, roof, o = u(1.2, 1.8), u(0.9, 1.3), u(0.7, 1.0), u(0.45, 0.8), u(0.05, 0.12)
    p.box((-w / 2, 0, -d / 2), (w / 2, h, d / 2), 0)
    p.prism(-w / 2 - o, w / 2 + o, -d / 2 - o, d / 2 + o, h, h + roof, 1)
    cx = w / 2 * u(0.3, 0.6)
    p.box((cx, h, -d / 4 - 0.1), (cx + 0.18, h + roof * 1.1, -d / 4 + 0.1), 2)
    dx = w / 2 * u(-0.1, 0.3)
    p.box((dx - 0.14, 0, d / 2), (dx + 0.14, h * u(0.55, 0.75), d / 2 + 0.06), 3)
    g = u(0.5, 0.8)                                                          # a lower wing (garage) on the left
    p.box((-w / 2 - g, 0, -d / 2 + 0.1), (-w / 2, h * u(0.5, 0.7), d / 2 + u(0.2, 0.4)), 0)


def _bottle(p: _Parts, u: Callable[[float, float], float]) -> None:
    r, h, rn, hn, off = u(0.35, 0.5), u(1.0, 1.5), u(0.1, 0.16), u(0.4, 0.7), u(0.12, 0.25)
    p.ring((0, 0, 0), r, 0, h, 0, n=10)
    p.box((-0.6 * r, 0.25 * h, 0.8 * r), (0.6 * r, 0.7 * h, r + 0.03), 3)  # a label on the front
    p.ring((off, 0, 0), rn * 1.6, h, h + hn * 0.3, 1, n=8, radius_top=rn)   # shoulder, off the axis
    p.ring((off, 0, 0), rn, h + hn * 0.3, h + hn, 1, n=8)
    p.ring((off, 0, 0), rn * 1.25, h + hn, h + hn + u(0.1, 0.18), 2, n=8)


def _airplane(p: _Parts, u: Callable[[float, float], float]) -> None:
    length, f, span, chord = u(1.8, 2.4), u(0.18, 0.26), u(1.4, 2.0), u(0.3, 0.45)
    p.box((-length / 2, 0, -f / 2), (length / 2, f, f / 2), 0)
    wx = length * u(-0.05, 0.15)
    p.box((wx - chord / 2, f * 0.35, -span / 2), (wx + chord / 2, f * 0.55, span / 2), 1)
    p.box((-length / 2, f, -0.03), (-length / 2 + chord * 0.8, f + u(0.35, 0.55), 0.03), 2)
    p.box((-length / 2, f * 0.7, -span * 0.2), (-length / 2 + chord * 0.6, f * 0.85, span * 0.2), 2)
    p.add(np.array([[length / 2, 0, -f / 2], [length / 2, 0, f / 2], [length / 2, f, f / 2],
                    [length / 2, f, -f / 2], [length / 2 + u(0.2, 0.35), f * 0.4, 0]]),
          np.array([[0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]]), 3)


def _lamp(p: _Parts, u: Callable[[float, float], float]) -> None:
    rb, h, arm, rs, hs = u(0.4, 0.55), u(1.2, 1.7), u(0.6, 0.9), u(0.25, 0.35), u(0.3, 0.45)
    p.ring((0, 0, 0), rb, 0, u(0.08, 0.14), 0, n=10)
    p.ring((0, 0, 0), 0.05, 0.08, h, 1, n=6)
    tilt = u(-0.25, 0.1)
    p.box((0, h - 0.05, -0.05), (arm, h + 0.05, 0.05), 1, tilt=tilt)
    tip = np.array([np.cos(tilt), np.sin(tilt)]) * arm + [0, h]
    p.ring((tip[0], 0, 0), rs, tip[1] - hs, tip[1], 2, n=10, radius_top=0.04)  # cone shade, opening down


def _stairs(p: _Parts, u: Callable[[float, float], float]) -> None:
    steps = 3 + int(u(0, 1) > 0.5)
    run, rise, width = u(0.3, 0.45), u(0.25, 0.35), u(0.8, 1.2)
    for i in range(steps):
        p.box((i * run, 0, 0), ((i + 1) * run, (i + 1) * rise, width), 0)
    top, post, t = steps * rise, u(0.45, 0.65), 0.06
    p.box((0, rise, width), (t, rise + post, width + t), 1)                 # railing on the near side: posts
    p.box(((steps - 1) * run, top, width), ((steps - 1) * run + t, top + post, width + t), 1)
    slope = np.arctan2(top - rise, (steps - 1) * run)                       # and the sloped handrail
    p.box((0, rise + post - t, width), (np.hypot(top - rise, (steps - 1) * run) + t, rise + post, width + t), 1,
          tilt=float(slope))

_BUILDERS: dict[str, Callable[[_Parts, Callable[[float, float], float]], None]] = {
    "l_block": _l_block, "t_block": _t_block, "chair": _chair, "desk": _desk, "mug": _mug, "house": _house,
    "bottle": _bottle, "airplane": _airplane, "lamp": _lamp, "stairs": _stairs}


def palette(hue: float) -> np.ndarray:
    """RGB ``[NUM_ROLES, 3]`` of the part roles for an instance of hue ``hue`` in ``[0, 1)``."""
    return np.array([colorsys.hsv_to_rgb((hue + dh) % 1.0, s, v) for dh, s, v in _ROLE_HSV], dtype=np.float32)


def class_index(name: str) -> int:
    """Index of class ``name`` in :data:`CLASSES`; a clear error for an unknown name."""
    if name not in CLASSES:
        raise ValueError(f"rotations: unknown object class {name!r}; the classes are {list(CLASSES)}")
    return CLASSES.index(name)


def make_mesh(cls: int | str, seed: int, random_hue: bool = True) -> Mesh:
    """Instance ``seed`` of class ``cls`` (index into :data:`CLASSES`, or its name): part proportions (and, with
    ``random_hue``, the palette's hue) drawn from ``numpy.random.default_rng(seed)``; deterministic."""
    name = cls if isinstance(cls, str) else CLASSES[cls]
    class_index(name)
    rng = np.random.default_rng(seed)
    hue = float(rng.random()) if random_hue else 0.05
    parts = _Parts()
    _BUILDERS[name](parts, lambda lo, hi: float(rng.uniform(lo, hi)))
    return parts.mesh(palette(hue))


__all__ = ["BOX_FACES", "CLASSES", "NUM_ROLES", "Mesh", "class_index", "make_mesh", "palette"]
