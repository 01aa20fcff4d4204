"""Rotations of 3-D space for the embedded 3DIEBench stand-in: sampling, and the continuous action vectors.

Conventions (used by the renderer, the DataModule and the tests alike):

- a rotation is a ``[..., 3, 3]`` matrix ``R`` acting on column vectors of object coordinates: a view of pose ``R``
  shows the object's vertices ``v`` at ``R v`` in the camera frame (``x`` right, ``y`` up, ``z`` towards the viewer);
- ``euler`` poses, as 3DIEBench's Blender renders (``rotation_mode = 'XYZ'``): angles ``(a, b, c)`` about the fixed
  x, y and z axes, ``R = Rz(c) Ry(b) Rx(a)`` (scipy's ``from_euler("xyz", ...)``), each angle uniform in
  ``[-angle_range, angle_range]`` degrees (3DIEBench: 90); ``uniform`` poses: Haar-uniform on SO(3) (normalized
  Gaussian quaternions);
- the relative rotation from view i to view j is ``R_i^T R_j`` (the reference code's ``rot_1.inv() * rot_2``): the
  rotation in the object's frame of view i, so that ``R_j = R_i @ rel``;
- action vectors: ``quaternion`` ``(w, x, y, z)`` with ``w >= 0`` (q and -q are the same rotation; the sign is fixed
  so that the vector is a function of the rotation, continuous except at rotations by exactly 180 degrees), or
  ``6d``, the first two columns of ``R`` (Zhou et al., "On the continuity of rotation representations": continuous
  everywhere), laid out ``r11, r21, r31, r12, r22, r32``.

Everything is torch (float32 unless given float64) and vectorized over leading dimensions; draws use the global
torch RNG unless a generator is given, so that the training sampler's per-sample seeding applies.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

ActionRepr = Literal["quaternion", "6d"]
PoseSampling = Literal["euler", "uniform"]
ACTION_NAMES: dict[str, list[str]] = {"quaternion": ["qw", "qx", "qy", "qz"],
                                      "6d": ["r11", "r21", "r31", "r12", "r22", "r32"]}


def axis_rotation(axis: int, angle: torch.Tensor) -> torch.Tensor:
    """Rotations ``[..., 3, 3]`` by ``angle`` (radians, ``[...]``) about coordinate axis ``axis`` (0: x, 1: y, 2: z),
    counter-clockwise when the axis points at the viewer."""
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(c), torch.zeros_like(c)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]  # the plane rotated, in right-handed order
    rows = [[zero, zero, zero] for _ in range(3)]
    rows[axis][axis] = one
    rows[i][i], rows[i][j], rows[j][i], rows[j][j] = c, -s, s, c
    return torch.stack([torch.stack(r, -1) for r in rows], -2)


def euler_to_matrix(angles: torch.Tensor) -> torch.Tensor:
    """``[..., 3]`` extrinsic x, y, z angles (radians) -> ``Rz(c) Ry(b) Rx(a)`` ``[..., 3, 3]``."""
    return axis_rotation(2, angles[..., 2]) @ axis_rotation(1, angles[..., 1]) @ axis_rotation(0, angles[..., 0])


def quaternion_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Unit (or not: normalized here) quaternions ``[..., 4]`` ``(w, x, y, z)`` -> rotations ``[..., 3, 3]``."""
    w, x, y, z = (q / q.norm(dim=-1, keepdim=True)).unbind(-1)
    rows = [[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]]
    return torch.stack([torch.stack(r, -1) for r in rows], -2)


def matrix_to_quaternion(r: torch.Tensor) -> torch.Tensor:
    """Rotations ``[..., 3, 3]`` -> unit quaternions ``[..., 4]`` ``(w, x, y, z)`` with ``w >= 0``.

    Each of the four candidate formulas divides by one component (``4w``, ``4x``, ...); the one with the largest
    denominator is taken per rotation (Shepperd's method), so the result is accurate near 180 degrees too."""
    m = r
    trace = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    sq = torch.stack([1 + trace, 1 + 2 * m[..., 0, 0] - trace, 1 + 2 * m[..., 1, 1] - trace,
                      1 + 2 * m[..., 2, 2] - trace], -1).clamp_min(0)       # 4 w^2, 4 x^2, 4 y^2, 4 z^2
    a, b = m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0]       # 4wx, 4wy
    c = m[..., 1, 0] - m[..., 0, 1]                                        # 4wz
    d, e = m[..., 1, 0] + m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0]       # 4xy, 4xz
    f = m[..., 2, 1] + m[..., 1, 2]                                        # 4yz
    cand = torch.stack([torch.stack([sq[..., 0], a, b, c], -1),           # numerators of 4w * (w, x, y, z)
                        torch.stack([a, sq[..., 1], d, e], -1),           # 4x * (w, x, y, z)
                        torch.stack([b, d, sq[..., 2], f], -1),           # 4y * (w, x, y, z)
                        torch.stack([c, e, f, sq[..., 3]], -1)], -2)      # 4z * (w, x, y, z)
    best = sq.argmax(-1)
    q = torch.gather(cand, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


def matrix_to_6d(r: torch.Tensor) -> torch.Tensor:
    """Rotations ``[..., 3, 3]`` -> their first two columns ``[..., 6]`` (``r11, r21, r31, r12, r22, r32``)."""
    return torch.cat([r[..., :, 0], r[..., :, 1]], -1)


def matrix_from_6d(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`matrix_to_6d` (Gram-Schmidt, so any two independent columns give a rotation)."""
    a = x[..., :3] / x[..., :3].norm(dim=-1, keepdim=True)
    b = x[..., 3:] - (a * x[..., 3:]).sum(-1, keepdim=True) * a
    b = b / b.norm(dim=-1, keepdim=True)
    return torch.stack([a, b, torch.linalg.cross(a, b)], -1)


def to_action(r: torch.Tensor, representation: ActionRepr) -> torch.Tensor:
    """Rotations ``[..., 3, 3]`` -> action vectors ``[..., A]`` (``A`` = 4 or 6; see the module docstring)."""
    if representation == "quaternion":
        return matrix_to_quaternion(r)
    if representation == "6d":
        return matrix_to_6d(r)
    raise ValueError(f"rotations: action representation must be one of {list(ACTION_NAMES)}, got {representation!r}")


def from_action(a: torch.Tensor, representation: ActionRepr) -> torch.Tensor:
    """Action vectors ``[..., A]`` -> rotations ``[..., 3, 3]`` (inverse of :func:`to_action`)."""
    return quaternion_to_matrix(a) if representation == "quaternion" else matrix_from_6d(a)


def relative(r: torch.Tensor) -> torch.Tensor:
    """Consecutive relative rotations ``R_i^T R_{i+1}`` ``[..., M - 1, 3, 3]`` of poses ``[..., M, 3, 3]``."""
    return r[..., :-1, :, :].transpose(-1, -2) @ r[..., 1:, :, :]


def sample_poses(n: int, sampling: PoseSampling = "euler", angle_range: float = 90.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` random poses ``[n, 3, 3]`` (float32): ``euler`` angles uniform in ``[-angle_range, angle_range]``
    degrees, or ``uniform`` on SO(3) (``angle_range`` unused)."""
    if sampling == "uniform":
        return quaternion_to_matrix(torch.randn(n, 4, generator=generator, dtype=torch.float64)).float()
    if sampling != "euler":
        raise ValueError(f"rotations: pose sampling must be 'euler' or 'uniform', got {sampling!r}")
    u = torch.rand(n, 3, generator=generator, dtype=torch.float64)
    return euler_to_matrix((2 * u - 1) * math.radians(angle_range)).float()


__all__ = ["ACTION_NAMES", "ActionRepr", "PoseSampling", "axis_rotation", "euler_to_matrix", "from_action",
           "matrix_from_6d", "matrix_to_6d", "matrix_to_quaternion", "quaternion_to_matrix", "relative",
           "sample_poses", "to_action"]
