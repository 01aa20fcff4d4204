"""Sequences of views of a 3-D object under known rotations, rendered on the fly: an embedded stand-in for
3DIEBench (seq-JEPA's and SIE's benchmark of invariant and equivariant representations), no download.

3DIEBench renders ShapeNet objects of 55 classes, each under 50 poses drawn as extrinsic x, y, z Euler angles in
[-90, 90] degrees, and seq-JEPA conditions on (and evaluates equivariance by regressing) the *relative* rotation
between two views, a quaternion. Here the objects are the procedural classes of :mod:`.meshes` (an instance = a
class and a seed for its proportions and hue), rendered by :mod:`.render`; poses and actions follow :mod:`.so3`.

A sample is one object instance seen in ``M = seq_len`` views with independently drawn poses ``R_1..R_M``. Batch
keys (as :class:`~datamodules.views.ViewSequenceDataModule`, so seq-JEPA and its evaluation run unchanged):

- ``views``: float32 ``[B, M, 3, S, S]``, normalized with ``mean``/``std``;
- ``actions``: float32 ``[B, M, A]``, the absolute pose ``R_i`` of each view as an action vector;
- ``rel_actions``: float32 ``[B, M - 1, A]``, the relative rotation ``R_i^T R_{i+1}`` (``R_{i+1} = R_i @ rel``) of
  consecutive views, as an action vector;
- ``label``: int64 ``[B]``, the class (index into ``classes``).

``action_repr``: ``quaternion`` (``A = 4``, ``(w, x, y, z)``, ``w >= 0``; as 3DIEBench's relative quaternion) or
``6d`` (``A = 6``, the first two columns of the rotation; continuous everywhere). Unlike the 2-D actions of
``views.py``, a relative action is *not* ``actions[i + 1] - actions[i]``: rotations compose, they do not add.

The object instances are fixed: instance ``i`` of a split has class ``classes[i % num_classes]`` (balanced) and
proportions drawn from ``(instance_seed, split, i)``; training and validation objects differ, as in 3DIEBench.
Training poses are drawn with the global torch RNG, which the training sampler seeds per (seed, epoch, index)
(see :class:`~datamodules.common.SeededSamples`): every epoch shows each object under new poses. Evaluation poses
are fixed per index (seeded by ``(seed, index)``), so validation sees the same sequences every time.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import torch
from torch.utils.data import Dataset

from jepa_lightning.seeding import mix_seed

from ..common import JEPADataModule
from .meshes import CLASSES, Mesh, class_index, make_mesh
from .render import DEFAULT_LIGHT, render_mesh
from .so3 import ACTION_NAMES, ActionRepr, PoseSampling, relative, sample_poses, to_action

MIN_IMAGE_SIZE = 8
_SPLITS = {"train": 0, "val": 1}


@lru_cache(maxsize=4096)
def _mesh(cls: int, seed: int, random_hue: bool) -> Mesh:
    return make_mesh(cls, seed, random_hue)


class RotatedObjectsDataset(Dataset):
    """``num_instances`` objects of ``classes`` (indices into :data:`~.meshes.CLASSES`), each a sequence of
    ``seq_len`` rendered views with their actions (see the module docstring). ``fixed_seed=None``: poses drawn
    with the global torch RNG; an integer: poses fixed per index (seeded by ``(fixed_seed, index)``).
    ``render_options`` go to :func:`~.render.render` (scale, light, ambient, background, supersample)."""

    def __init__(self, classes: Sequence[int], num_instances: int, instance_seed: int, split: str, seq_len: int,
                 image_size: int, pose_sampling: PoseSampling, angle_range: float, action_repr: ActionRepr,
                 random_hue: bool, mean: Sequence[float], std: Sequence[float], fixed_seed: int | None = None,
                 **render_options: Any) -> None:
        self.classes, self.num_instances, self.seq_len = list(classes), num_instances, seq_len
        self.instance_seed, self.split_id = instance_seed, _SPLITS[split]
        self.image_size, self.pose_sampling, self.angle_range = image_size, pose_sampling, angle_range
        self.action_repr, self.random_hue, self.fixed_seed = action_repr, random_hue, fixed_seed
        self.render_options = render_options
        self.mean = torch.tensor([float(m) for m in mean]).view(-1, 1, 1)
        self.std = torch.tensor([float(s) for s in std]).view(-1, 1, 1)

    def __len__(self) -> int:
        return self.num_instances

    def instance(self, index: int) -> tuple[int, Mesh]:
        """The label (position in ``classes``) and mesh of object ``index``."""
        label = index % len(self.classes)
        seed = mix_seed(self.instance_seed, self.split_id, index)
        return label, _mesh(self.classes[label], seed, self.random_hue)

    def render(self, index: int, poses: torch.Tensor) -> torch.Tensor:
        """Views ``[M, 3, S, S]`` in ``[0, 1]`` (before normalization) of object ``index`` under ``poses``."""
        return render_mesh(self.instance(index)[1], poses, self.image_size, **self.render_options)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if self.fixed_seed is None:
            poses = sample_poses(self.seq_len, self.pose_sampling, self.angle_range)
        else:
            g = torch.Generator().manual_seed(mix_seed(self.fixed_seed, index))
            poses = sample_poses(self.seq_len, self.pose_sampling, self.angle_range, generator=g)
        label, mesh = self.instance(index)
        views = render_mesh(mesh, poses, self.image_size, **self.render_options)
        return {"views": (views - self.mean) / self.std, "actions": to_action(poses, self.action_repr),
                "rel_actions": to_action(relative(poses), self.action_repr),
                "label": torch.tensor(label, dtype=torch.int64)}


class RotationSequenceDataModule(JEPADataModule):
    """Sequences of rendered views of procedural 3-D objects under known 3-D rotations (seq-JEPA on a 3DIEBench
    stand-in); see the module docstring for the batch keys and actions.

    Args:
        classes: object classes (names from :data:`~.meshes.CLASSES`; ``None``: all 10).
        num_train, num_val: object instances per split (balanced over the classes).
        image_size: side ``S`` of the rendered views (>= 8).
        seq_len: views per training sequence, the held-out view included (``M``; the paper: 3 observed + 1).
        val_seq_len: views per evaluation sequence (default ``seq_len``).
        pose_sampling: ``euler`` (extrinsic x, y, z angles, each uniform in ``[-angle_range, angle_range]``
            degrees; 3DIEBench: 90) or ``uniform`` (Haar-uniform on SO(3)).
        action_repr: ``quaternion`` (``A = 4``) or ``6d`` (``A = 6``), for ``actions`` and ``rel_actions``.
        random_hue: each instance rotates the shared part palette's hue (colour says little about the class).
        supersample: render at this factor and average (anti-aliasing; cost ~ factor^2).
        scale, light, ambient, background: see :func:`~.render.render`.
        mean, std: normalization of the views (one value per channel, or one for all).
        instance_seed: seed of the objects' proportions and hues (the DataLoader ``seed`` sets the poses).
        loader: the DataLoader settings of :class:`JEPADataModule` (batch_size, num_workers, seed, ...).
    """

    def __init__(
        self,
        classes: list[str] | None = None,
        num_train: int = 2000,
        num_val: int = 500,
        image_size: int = 32,
        seq_len: int = 4,
        val_seq_len: int | None = None,
        pose_sampling: PoseSampling = "euler",
        angle_range: float = 90.0,
        action_repr: ActionRepr = "quaternion",
        random_hue: bool = True,
        supersample: int = 1,
        scale: float = 0.92,
        light: tuple[float, float, float] = DEFAULT_LIGHT,
        ambient: float = 0.35,
        background: tuple[float, float, float] = (0.5, 0.5, 0.5),
        mean: tuple[float, ...] = (0.5,),
        std: tuple[float, ...] = (0.5,),
        instance_seed: int = 0,
        num_workers: int = 0,
        **loader: Any,
    ) -> None:
        super().__init__(num_workers=num_workers, **loader)
        self.save_hyperparameters()
        name = "RotationSequenceDataModule"
        names = list(CLASSES) if classes is None else list(classes)
        if not names or len(set(names)) != len(names):
            raise ValueError(f"{name}: classes must be distinct names from {list(CLASSES)}, got {classes}")
        for c in names:
            try:
                class_index(c)
            except ValueError as err:
                raise ValueError(f"{name}: classes: {err}") from None
        if seq_len < 2:
            raise ValueError(f"{name}: seq_len must be >= 2 (observed views + the held-out view), got {seq_len}")
        self.val_seq_len = seq_len if val_seq_len is None else val_seq_len
        if self.val_seq_len < 1:
            raise ValueError(f"{name}: val_seq_len must be >= 1, got {val_seq_len}")
        if image_size < MIN_IMAGE_SIZE:
            raise ValueError(f"{name}: image_size must be >= {MIN_IMAGE_SIZE} (smaller renders show no shape), "
                             f"got {image_size}")
        for arg, value in (("num_train", num_train), ("num_val", num_val), ("supersample", supersample)):
            if value < 1:
                raise ValueError(f"{name}: {arg} must be >= 1, got {value}")
        if pose_sampling not in ("euler", "uniform"):
            raise ValueError(f"{name}: pose_sampling must be 'euler' or 'uniform', got {pose_sampling!r}")
        if not 0 < angle_range <= 180:
            raise ValueError(f"{name}: angle_range must be in (0, 180] degrees, got {angle_range}")
        if action_repr not in ACTION_NAMES:
            raise ValueError(f"{name}: action_repr must be one of {list(ACTION_NAMES)}, got {action_repr!r}")
        if not 0 < scale <= 1 or not 0 <= ambient <= 1:
            raise ValueError(f"{name}: scale must be in (0, 1] and ambient in [0, 1], got {scale}, {ambient}")
        if min(std) <= 0 or any(len(v) not in (1, 3) for v in (mean, std)):
            raise ValueError(f"{name}: mean and std need 1 or 3 values, std > 0; got {list(mean)}, {list(std)}")
        if not any(light) or len(light) != 3 or len(background) != 3:
            raise ValueError(f"{name}: light must be a non-zero 3-vector and background an RGB triple, got "
                             f"{list(light)}, {list(background)}")
        self.classes, self.num_classes = names, len(names)
        self.num_train, self.num_val, self.image_size, self.seq_len = num_train, num_val, image_size, seq_len
        self.action_repr = action_repr
        self._common = dict(classes=[class_index(c) for c in names], instance_seed=instance_seed,
                            image_size=image_size, pose_sampling=pose_sampling, angle_range=float(angle_range),
                            action_repr=action_repr, random_hue=random_hue, mean=tuple(mean), std=tuple(std),
                            supersample=supersample, scale=scale, light=tuple(light), ambient=ambient,
                            background=tuple(background))

    @property
    def action_dim(self) -> int:
        """Length ``A`` of the action vectors (what the method's ``action_dim`` must be): 4 or 6."""
        return len(self.action_names)

    @property
    def action_names(self) -> list[str]:
        return list(ACTION_NAMES[self.action_repr])

    def dataset(self, split: str, seq_len: int, fixed_seed: int | None) -> RotatedObjectsDataset:
        """The objects of ``split`` (``train`` or ``val``) as sequences of ``seq_len`` views."""
        n = self.num_train if split == "train" else self.num_val
        return RotatedObjectsDataset(num_instances=n, split=split, seq_len=seq_len, fixed_seed=fixed_seed,
                                     **self._common)

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        self.train_dataset = self.dataset("train", self.seq_len, None)
        self.train_eval_dataset = self.dataset("train", self.val_seq_len, self.seed)
        self.val_dataset = self.test_dataset = self.dataset("val", self.val_seq_len, self.seed + 1)


__all__ = ["MIN_IMAGE_SIZE", "RotatedObjectsDataset", "RotationSequenceDataModule"]
