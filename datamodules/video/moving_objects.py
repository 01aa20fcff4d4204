""":class:`MovingObjectsDataModule`: textured shapes moving over panning photographs
(:mod:`~datamodules.video.object_motion`), written once as real h264 mp4 files into a cache folder and read back
through the same PyAV path as any video set. Labels: the main object's shape (appearance) and its motion
(direction x speed), which no single frame shows.
"""

from __future__ import annotations

import csv
import os
from dataclasses import asdict
from typing import Any, Literal

from lightning.pytorch.utilities.rank_zero import rank_zero_warn

from ..object_render import NUM_SHAPES, SHAPES, SceneSpec
from .codec import write_mp4
from .embedded import EmbeddedVideoDataModule
from .object_motion import OBJECT_MOTIONS, MotionSpec, render_moving_objects

_VERSION = 1  # bump when the generated videos change: the cache folder is keyed by it
LABELS = {"shape": NUM_SHAPES, "motion": len(OBJECT_MOTIONS)}


def generate_moving_objects(folder: str, num_train: int, num_val: int, video_frames: int, fps: int, gen_seed: int,
                            spec: MotionSpec, chunk: int = 16) -> None:
    """Writes ``train/*.mp4``, ``val/*.mp4``, ``train.csv`` and ``val.csv`` (``path,shape,motion``) into the
    (new, empty) ``folder``; train and val from independent streams of ``gen_seed``, motion classes balanced."""
    options = {"crf": "10", "preset": "veryfast", "threads": "1"}  # x264 threads cost more than they save here
    for stream, (split, count) in enumerate((("train", num_train), ("val", num_val))):
        os.makedirs(os.path.join(folder, split))
        rows = []
        out = render_moving_objects(count, video_frames, seed=2 * gen_seed + stream, chunk=chunk, spec=spec)
        for i in range(count):
            rel = f"{split}/{i:05d}.mp4"
            write_mp4(os.path.join(folder, rel), out["video"][i].numpy(), fps, options)
            rows.append((rel, int(out["shape"][i]), int(out["motion"][i])))
        with open(os.path.join(folder, f"{split}.csv"), "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(("path", "shape", "motion"))
            writer.writerows(rows)


class MovingObjectsDataModule(EmbeddedVideoDataModule):
    """Moving textured shapes on panning photographs, as real h264 mp4 videos (nothing is downloaded: generated
    once into ``cache_dir/<hash of the generation parameters>/``, ``cache_dir`` defaulting to
    ``$JEPA_LIGHTNING_CACHE/moving_objects``, else ``~/.cache/jepa_lightning/moving_objects``).

    Every video has two labels (batch keys ``shape`` and ``motion``; ``label`` is the one named by ``label``,
    and ``num_classes`` follows it):

    - ``shape``: the main object's class, one of :data:`~datamodules.object_render.SHAPES` (10): appearance;
    - ``motion``: one of :data:`~datamodules.video.object_motion.OBJECT_MOTIONS` (right/left/down/up x
      slow/fast, 8): the main object's own motion over a background that pans too. At a random frame the
      object's position has the same distribution whatever the motion, so a probe on ``motion`` tells whether an
      encoder captures time.

    Args:
        num_train, num_val: videos per split (the test split is val).
        video_frames, fps: frames per video and its frame rate.
        image_size, main_scale, distractor_scale, objects_per_scene, rotation: the scene
            (:class:`~datamodules.object_render.SceneSpec`: sizes are radii as fractions of ``image_size``).
        main_range, travel, distractor_speed, pan_speed: the motion
            (:class:`~datamodules.video.object_motion.MotionSpec`).
        background: "photographs" (crops of scikit-learn's two photographs) or "noise" (a fresh smooth random field
            per video, which no model can memorise: :func:`~datamodules.object_render.noise_backgrounds`).
        gen_seed: seed of the generator.
        label, frames_per_clip, frame_step, ...: as :class:`~datamodules.video.VideoDataModule`. The default clip
            (8 frames, 2 apart) spans the whole 16-frame video. ``hflip`` is off and should stay off: a flip
            swaps the "right" and "left" motion labels.
    """

    kind = "moving_objects"
    motions = OBJECT_MOTIONS
    classes_by_label = {"shape": list(SHAPES), "motion": list(OBJECT_MOTIONS)}

    def __init__(
        self,
        cache_dir: str | None = None,
        num_train: int = 2000,
        num_val: int = 500,
        video_frames: int = 16,
        fps: int = 8,
        image_size: int = 64,
        main_scale: tuple[float, float] = (0.18, 0.22),
        distractor_scale: tuple[float, float] = (0.05, 0.09),
        objects_per_scene: tuple[int, int] = (2, 4),
        rotation: float = 15.0,
        main_range: tuple[float, float] = (0.25, 0.75),
        travel: tuple[float, float] = (0.4, 0.8),
        distractor_speed: tuple[float, float] = (0.3, 1.5),
        pan_speed: float = 0.6,
        background: Literal["photographs", "noise"] = "photographs",
        gen_seed: int = 0,
        label: Literal["shape", "motion"] = "shape",
        frames_per_clip: int = 8,
        frame_step: int = 2,
        num_clips: int = 1,
        eval_clips: int = 1,
        eval_views: int = 1,
        crop_size: int = 64,
        crop_scale: tuple[float, float] = (0.5, 1.0),
        crop_ratio: tuple[float, float] = (0.75, 1.35),
        hflip: bool = False,
        mean: tuple[float, float, float] = (0.5, 0.5, 0.5),
        std: tuple[float, float, float] = (0.25, 0.25, 0.25),
        short_videos: Literal["loop", "pad", "skip"] = "loop",
        seek: bool = True,
        decode_threads: int = 1,
        batch_size: int = 32,
        num_workers: int = 2,
        **loader: Any,
    ) -> None:
        """``loader``: the other DataLoader settings of :class:`JEPADataModule` (pin_memory, seed, ...)."""
        for name, value, least in (("num_train", num_train, 1), ("num_val", num_val, 1),
                                   ("video_frames", video_frames, 2), ("fps", fps, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
        if not isinstance(image_size, int) or image_size < 8 or image_size % 2:
            raise ValueError(f"image_size must be an even number of pixels >= 8 (h264 yuv420p), got {image_size!r}")
        if label not in LABELS:
            raise ValueError(f"label must be one of {tuple(LABELS)}, got {label!r}")
        if hflip:
            rank_zero_warn("MovingObjectsDataModule(hflip=True): a horizontal flip swaps the 'right' and 'left'"
                           " motion labels")
        scene = SceneSpec(image_size=image_size, main_scale=tuple(main_scale), distractor_scale=tuple(distractor_scale),
                          objects_per_scene=tuple(int(v) for v in objects_per_scene), rotation=float(rotation),
                          background_source=background)
        self.spec = MotionSpec(scene=scene, main_range=tuple(main_range), travel=tuple(travel),
                               distractor_speed=tuple(distractor_speed), pan_speed=float(pan_speed))
        generation = {"num_train": num_train, "num_val": num_val, "video_frames": video_frames, "fps": fps,
                      "gen_seed": gen_seed, "spec": asdict(self.spec), "version": _VERSION}
        super().__init__(
            cache_dir, generation, label=label, frames_per_clip=frames_per_clip, frame_step=frame_step,
            num_clips=num_clips, eval_clips=eval_clips, eval_views=eval_views, crop_size=crop_size,
            crop_scale=crop_scale, crop_ratio=crop_ratio, hflip=hflip, mean=mean, std=std, short_videos=short_videos,
            seek=seek, decode_threads=decode_threads, batch_size=batch_size, num_workers=num_workers, **loader,
        )
        self.label_names = ["label", "motion", "shape"]
        self.num_classes = LABELS[label]

    def _count_classes(self, index: dict[str, list[tuple[str, dict[str, int]]]]) -> int:
        return LABELS[self.label]

    def _generate(self, folder: str) -> dict[str, int]:
        g = self.generation
        generate_moving_objects(folder, g["num_train"], g["num_val"], g["video_frames"], g["fps"], g["gen_seed"],
                                self.spec)
        return {"train": g["num_train"], "val": g["num_val"]}
