""":class:`EmbeddedVideoDataModule`: the shared half of the embedded video sets (generated once into a cache
folder keyed by their generation parameters, then read back through :class:`VideoDataModule`'s PyAV path)."""

from __future__ import annotations

import os
from typing import Any

from ..common import GeneratedOnce, embedded_root
from .datamodule import VideoDataModule


class EmbeddedVideoDataModule(GeneratedOnce, VideoDataModule):
    """A :class:`VideoDataModule` over videos it writes itself: ``train.csv`` and ``val.csv`` (the test split is
    val) in ``cache_dir/<hash of generation>/`` (``cache_dir`` defaults to ``$JEPA_LIGHTNING_CACHE/<kind>``,
    else ``~/.cache/jepa_lightning/<kind>``). Generation (``prepare_data``, or lazily in ``setup``) writes a
    temporary folder next to it and renames it into place, so concurrent processes never see half a dataset;
    changed generation parameters give another folder, identical ones reuse it.

    Subclasses set ``kind`` and implement ``_generate(folder) -> counts`` (:class:`~datamodules.common.GeneratedOnce`)."""

    _index_at_init = False  # the CSVs exist only after prepare_data
    kind = "videos"
    generated_what = "videos"

    def __init__(self, cache_dir: str | None, generation: dict[str, Any], **video: Any) -> None:
        self.generation = generation
        self.cache_dir, self.data_dir = embedded_root(cache_dir, self.kind, generation)
        csv = {split: os.path.join(self.data_dir, f"{split}.csv") for split in ("train", "val")}
        super().__init__(train=csv["train"], val=csv["val"], test=csv["val"], **video)
        self.generation_seconds = None  # set when this object generated the videos

    def setup(self, stage: str | None = None) -> None:
        if not self.generated:
            self.prepare_data()
        super().setup(stage)
