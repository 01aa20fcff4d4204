"""An embedded stand-in for 3DIEBench: procedural 3-D objects rendered under known 3-D rotations, as sequences of
views with their absolute and relative rotations (seq-JEPA's invariance/equivariance benchmark), no download.

Modules, each importing only those above it:

- :mod:`~datamodules.rotations.so3`: rotation conventions, pose sampling (Euler ranges as 3DIEBench, or uniform
  on SO(3)) and the action vectors (quaternion ``w >= 0`` or the 6-D representation);
- :mod:`~datamodules.rotations.meshes`: the 10 procedural object classes (:data:`CLASSES`, :func:`make_mesh`);
- :mod:`~datamodules.rotations.render`: the vectorized software renderer (orthographic, z-buffered, Lambertian);
- :mod:`~datamodules.rotations.datamodule`: :class:`RotatedObjectsDataset` and
  :class:`RotationSequenceDataModule` (batch keys and shapes).
"""

from .datamodule import RotatedObjectsDataset, RotationSequenceDataModule
from .meshes import CLASSES, Mesh, make_mesh
from .render import rasterize, render, render_mesh
from .so3 import from_action, relative, sample_poses, to_action

__all__ = [
    "CLASSES",
    "Mesh",
    "RotatedObjectsDataset",
    "RotationSequenceDataModule",
    "from_action",
    "make_mesh",
    "rasterize",
    "relative",
    "render",
    "render_mesh",
    "sample_poses",
    "to_action",
]
