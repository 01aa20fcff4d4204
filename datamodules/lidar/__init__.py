"""LiDAR point clouds for AD-L-JEPA: a KITTI-format reader, vectorized BEV voxelization, global augmentations and
an embedded LiDAR simulator that writes the same format (no download).

Modules, each importing only those above it:

- :mod:`~datamodules.lidar.geometry`: boxes in the LiDAR frame (:func:`box_corners`, :func:`points_in_boxes`), BEV
  voxelization (:func:`grid_size`, :func:`voxelize`, :func:`voxelize_batch`) and :func:`augment_scene`;
- :mod:`~datamodules.lidar.kitti`: the KITTI layout, its reader and writer (:func:`read_kitti_frame`,
  :func:`write_kitti_frame`, :class:`KittiCalib`, :func:`read_split`, :class:`MalformedFile`);
- :mod:`~datamodules.lidar.simulate`: the embedded set's simulator (:class:`LidarSensor`, :func:`simulate_scene`,
  :func:`generate_lidar_dataset`);
- :mod:`~datamodules.lidar.datamodule`: :class:`KittiLidarDataset`, :func:`collate_lidar` and
  :class:`LidarDataModule` (batch keys and shapes).

The names below are imported lazily (`jepa_lightning.lazy`), each with its own module only.
"""

from jepa_lightning.lazy import lazy_exports

__all__ = [
    "CLASS_NAMES",
    "KittiCalib",
    "KittiLidarDataset",
    "LidarDataModule",
    "LidarSensor",
    "MalformedFile",
    "augment_scene",
    "box_corners",
    "cast_rays",
    "collate_lidar",
    "default_calib",
    "generate_lidar_dataset",
    "grid_size",
    "in_range",
    "kitti_to_lidar_boxes",
    "lidar_to_kitti_lines",
    "points_in_boxes",
    "read_calib",
    "read_kitti_frame",
    "read_label_file",
    "read_split",
    "read_velodyne",
    "simulate_scene",
    "voxelize",
    "voxelize_batch",
    "write_kitti_frame",
]

__getattr__, __dir__ = lazy_exports(__name__, {
    "datamodule": ["KittiLidarDataset", "LidarDataModule", "collate_lidar"],
    "geometry": [
        "augment_scene", "box_corners", "grid_size", "in_range", "points_in_boxes", "voxelize",
        "voxelize_batch",
    ],
    "kitti": [
        "CLASS_NAMES", "KittiCalib", "MalformedFile", "default_calib", "kitti_to_lidar_boxes",
        "lidar_to_kitti_lines", "read_calib", "read_kitti_frame", "read_label_file", "read_split",
        "read_velodyne", "write_kitti_frame",
    ],
    "simulate": ["LidarSensor", "cast_rays", "generate_lidar_dataset", "simulate_scene"],
})
