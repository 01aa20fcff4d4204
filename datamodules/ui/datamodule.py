"""UI screen recordings for user-intent understanding (UI-JEPA): :class:`UIRecordingsDataModule` reads a
release in the IIW / IIT layout (:mod:`~datamodules.ui.reader`) or the embedded synthetic set
(:mod:`~datamodules.ui.synthetic`).

Batches (dicts; unreadable files are skipped and reported, see :mod:`datamodules.common`):

- ``"video"``: ``[B, C, T, H, W]``, T = ``num_frames`` frames sampled uniformly over the WHOLE recording
  (frame ``round(i * (n - 1) / (T - 1))`` of an n-frame video, first and last included), each frame resized to
  ``image_size`` (no crop, no flip: UI-JEPA found both hurt, a crop can cut away the tapped widget); float32
  normalized with ``mean``/``std`` like :class:`~datamodules.video.VideoDataModule`, or uint8 with
  ``normalize=False``;
- ``"intent"``: list of strings; ``"category"``: int64 index into :attr:`UIRecordingsDataModule.category_names`
  (sorted names over all splits, so zero-shot categories have indices too); ``"path"``: list of file paths.

Recordings shorter than ``num_frames`` are dropped at setup with a report (count and names).
"""

from __future__ import annotations

import os
from typing import Literal

from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn

from ..common import JEPADataModule, embedded_root, generate_once
from ..video.codec import _av, video_frame_count
from ..video.transforms import IMAGENET_MEAN, IMAGENET_STD
from .reader import SPLITS, UIRecordingDataset, read_ui_annotations
from .synthetic import _UI_VERSION, SET_DEFAULTS, UI_SETS, generate_ui_recordings


class UIRecordingsDataModule(JEPADataModule):
    """UI screen recordings with intents, in the IIW / IIT release layout (see :mod:`datamodules.ui.reader`).

    ``root``: a release folder (``<root>/<split>/annotations.csv``); ``None`` uses the embedded synthetic set
    ``synthetic`` ("iit": 10 categories, lexicalised intents; "iiw": 24 categories, delexicalised; "interact": 12
    categories on one app skin whose intent lies in which element is touched and how the screen changes, with no
    colour cue, see :mod:`~datamodules.ui.interact`), generated
    once (``prepare_data``, or lazily in ``setup``) into ``cache_dir/<set>/<hash of the generation
    parameters>/`` (``cache_dir`` defaults to ``$JEPA_LIGHTNING_CACHE/ui_recordings``, else
    ``~/.cache/jepa_lightning/ui_recordings``) with an atomic rename, and read back through the same reader.

    ``video_column`` / ``intent_column`` / ``category_column``: the csv columns (the release does not document
    them). ``train_split`` / ``few_shot_split`` / ``zero_shot_split``: the split folder names. ``val_split`` and
    ``test_split`` pick which of few-shot and zero-shot serve as validation and test (predict uses the test
    split). ``num_frames`` frames uniformly over each whole recording (16 as in UI-JEPA); shorter recordings are
    dropped at setup and reported (``dropped_short``). No crop or flip (UI-JEPA found they hurt): frames are
    resized to ``image_size`` (H, W). ``normalize=False`` yields uint8 videos.

    Synthetic generation sizes: ``train_per_category`` (common categories), ``few_shot_train`` (train
    recordings of each few-shot category), ``eval_per_category`` (few-shot and zero-shot splits),
    ``zero_shot_categories`` / ``few_shot_categories`` (None: 2/2 for iit and interact, 6/6 for iiw), ``min_frames`` /
    ``max_frames``, ``width`` x ``height`` pixels (portrait; None: 64 x 112, and for interact 48 x 96, the UI-JEPA
    recipe's frame size, so its frames need no resampling and their colours stay balanced), ``fps``, ``gen_seed``.
    """

    def __init__(
        self,
        root: str | None = None,
        synthetic: Literal["iit", "iiw", "interact"] = "iit",
        cache_dir: str | None = None,
        video_column: str = "video",
        intent_column: str = "intent",
        category_column: str = "category",
        train_split: str = "train",
        few_shot_split: str = "few_shot",
        zero_shot_split: str = "zero_shot",
        val_split: Literal["few_shot", "zero_shot"] = "few_shot",
        test_split: Literal["few_shot", "zero_shot"] = "zero_shot",
        num_frames: int = 16,
        image_size: tuple[int, int] = (64, 64),
        normalize: bool = True,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        decode_threads: int = 1,
        train_per_category: int = 16,
        few_shot_train: int = 2,
        eval_per_category: int = 8,
        zero_shot_categories: int | None = None,
        few_shot_categories: int | None = None,
        min_frames: int = 32,
        max_frames: int = 64,
        width: int | None = None,
        height: int | None = None,
        fps: int = 8,
        gen_seed: int = 0,
        batch_size: int = 16,
        num_workers: int = 0,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        drop_last: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, pin_memory=pin_memory,
                         persistent_workers=persistent_workers, drop_last=drop_last, seed=seed)
        self.save_hyperparameters()
        _av()
        if synthetic not in UI_SETS:
            raise ValueError(f"synthetic must be one of {tuple(UI_SETS)}, got {synthetic!r}")
        defaults = SET_DEFAULTS[synthetic]
        width = defaults.get("width", 64) if width is None else width
        height = defaults.get("height", 112) if height is None else height
        for name, value in (("val_split", val_split), ("test_split", test_split)):
            if value not in ("few_shot", "zero_shot"):
                raise ValueError(f"{name} must be 'few_shot' or 'zero_shot', got {value!r}")
        for name, value, least in (("num_frames", num_frames, 1), ("train_per_category", train_per_category, 1),
                                   ("few_shot_train", few_shot_train, 0), ("eval_per_category", eval_per_category, 1),
                                   ("min_frames", min_frames, 2), ("fps", fps, 1), ("decode_threads", decode_threads, 0)):
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
        if max_frames < min_frames:
            raise ValueError(f"max_frames={max_frames} must be >= min_frames={min_frames}")
        if len(image_size) != 2 or min(image_size) < 1:
            raise ValueError(f"image_size must be (height, width) >= 1, got {tuple(image_size)}")
        for name, value in (("width", width), ("height", height)):
            if not isinstance(value, int) or value < 32 or value % 2:
                raise ValueError(f"{name} must be an even number of pixels >= 32 (h264 yuv420p), got {value!r}")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean and std must have 3 values (R, G, B), std > 0; got {tuple(mean)}, {tuple(std)}")
        n_cat = len(UI_SETS[synthetic])
        zero = defaults["zero_shot_categories"] if zero_shot_categories is None else zero_shot_categories
        few = defaults["few_shot_categories"] if few_shot_categories is None else few_shot_categories
        if root is None and (zero < 1 or few < 1 or zero + few >= n_cat):
            raise ValueError(f"zero_shot_categories={zero} and few_shot_categories={few} must be >= 1 and leave"
                             f" at least one common category of the {n_cat} of synthetic={synthetic!r}")
        self.split_dirs = {"train": train_split, "few_shot": few_shot_split, "zero_shot": zero_shot_split}
        self.columns = {"video_column": video_column, "intent_column": intent_column,
                        "category_column": category_column}
        self.val_split, self.test_split = val_split, test_split
        self.num_frames, self.image_size, self.normalize = num_frames, tuple(image_size), normalize
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.decode_threads = decode_threads
        self.synthetic = synthetic if root is None else None
        self.generation = {"ui_set": synthetic, "train_per_category": train_per_category,
                           "few_shot_train": few_shot_train, "eval_per_category": eval_per_category,
                           "zero_shot_categories": zero, "few_shot_categories": few, "min_frames": min_frames,
                           "max_frames": max_frames, "width": width, "height": height, "fps": fps,
                           "gen_seed": gen_seed}
        if root is None:
            self.cache_dir: str | None
            self.cache_dir, self.root = embedded_root(cache_dir and os.path.join(cache_dir, synthetic),
                                                      os.path.join("ui_recordings", synthetic),
                                                      {**self.generation, "version": _UI_VERSION})
        else:
            self.cache_dir = None
            self.root = os.path.abspath(os.path.expanduser(os.fspath(root)))
            if not os.path.isdir(self.root):
                raise FileNotFoundError(f"root '{self.root}' does not exist; expected a folder with split folders"
                                        f" {list(self.split_dirs.values())}, each holding an annotations.csv")
        self.index: dict[str, list[tuple[str, str, str]]] | None = None
        self._categories: list[str] | None = None
        self.dropped_short: dict[str, list[str]] = {}
        self.generation_seconds: float | None = None

    # ------------------------------------------------------------------------------------- generation
    @property
    def generated(self) -> bool:
        return self.synthetic is None or os.path.isfile(os.path.join(self.root, "params.json"))

    def prepare_data(self) -> None:
        """Generates the synthetic set unless it is cached (atomic; safe with concurrent processes)."""
        if self.generated:
            return
        done = generate_once(self.root, {**self.generation, "version": _UI_VERSION},
                             lambda folder: generate_ui_recordings(folder, **self.generation))
        if done is not None:
            counts, self.generation_seconds = done
            rank_zero_info(f"UIRecordingsDataModule: wrote {sum(counts.values())} {self.synthetic} recordings"
                           f" {counts} to {self.root} in {self.generation_seconds:.1f}s")

    # ----------------------------------------------------------------------------------------- index
    def _csv(self, split: str) -> str:
        return os.path.join(self.root, self.split_dirs[split], "annotations.csv")

    def _read_index(self) -> None:
        if not self.generated:
            self.prepare_data()
        needed = {"train", self.val_split, self.test_split}
        index = {}
        for split in SPLITS:
            path = self._csv(split)
            if split in needed or os.path.isfile(path):
                index[split] = read_ui_annotations(path, **self.columns)
        names = sorted({c for rows in index.values() for _, _, c in rows})
        if not names or any(not c for rows in index.values() for _, _, c in rows):
            empty = [p for rows in index.values() for p, _, c in rows if not c][:3]
            raise ValueError(f"empty '{self.columns['category_column']}' for {empty} under '{self.root}'"
                             if empty else f"no recordings listed under '{self.root}'")
        self.index, self._categories = index, names

    @property
    def category_names(self) -> list[str]:
        """Sorted category names over all splits; a batch's ``category`` indexes this list."""
        if self._categories is None:
            self._read_index()
        assert self._categories is not None
        return list(self._categories)

    @property
    def num_classes(self) -> int:
        return len(self.category_names)

    def categories_of(self, split: str) -> list[str]:
        """Sorted category names present in ``split`` (train, few_shot, zero_shot)."""
        if self.index is None:
            self._read_index()
        assert self.index is not None
        return sorted({c for _, _, c in self.index.get(split, [])})

    def intents_of(self, split: str) -> list[str]:
        """The intent texts listed for ``split`` (train, few_shot, zero_shot), in annotation order (e.g. the
        corpus an intent decoder trains its tokenizer on)."""
        if self.index is None:
            self._read_index()
        assert self.index is not None
        return [intent for _, intent, _ in self.index.get(split, [])]

    def _samples(self, split: str) -> list[tuple[str, str, int, int | None]]:
        """The split's samples with their frame counts; those shorter than ``num_frames`` dropped and reported.
        A file whose count cannot be read stays in, to be skipped and reported when it is loaded."""
        assert self.index is not None and self._categories is not None
        lookup = {c: i for i, c in enumerate(self._categories)}
        keep, short = [], []
        errors = (OSError, ValueError, EOFError, _av().error.FFmpegError)
        for path, intent, category in self.index[split]:
            try:
                count: int | None = video_frame_count(path, self.decode_threads)
            except errors:
                count = None
            if count is not None and count < self.num_frames:
                short.append(f"{os.path.basename(path)} ({count} frames)")
                continue
            keep.append((path, intent, lookup[category], count))
        self.dropped_short[split] = short
        if short:
            listed = ", ".join(short[:10]) + (f" and {len(short) - 10} more" if len(short) > 10 else "")
            rank_zero_warn(f"UIRecordingsDataModule: dropped {len(short)} {split} recording(s) shorter than"
                           f" num_frames={self.num_frames}: {listed}")
        if not keep:
            raise ValueError(f"no {split} recording under '{os.path.dirname(self._csv(split))}' has"
                             f" num_frames={self.num_frames} frames or more")
        return keep

    def _dataset(self, split: str) -> UIRecordingDataset:
        return UIRecordingDataset(self._samples(split), self.num_frames, self.image_size, self.mean, self.std,
                                  self.normalize, self.decode_threads)

    def setup(self, stage: str | None = None) -> None:
        if self.index is None:
            self._read_index()
        if stage in (None, "fit") and self.train_dataset is None:
            self.train_dataset = self.train_eval_dataset = self._dataset("train")
        if stage in (None, "fit", "validate") and self.val_dataset is None:
            self.val_dataset = self._dataset(self.val_split)
        if stage in (None, "test", "predict") and self.test_dataset is None:
            self.test_dataset = self.predict_dataset = self._dataset(self.test_split)
