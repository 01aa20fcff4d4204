"""UI screen recordings (UI-JEPA data): the synthetic IIT/IIW generator and the release-layout reader."""

from __future__ import annotations

import csv
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

av = pytest.importorskip("av")

from datamodules.common import SkippedSampleWarning  # noqa: E402
from datamodules.ui import (  # noqa: E402
    CATEGORIES,
    SPLITS,
    UI_SETS,
    UIRecordingsDataModule,
    read_ui_annotations,
    uniform_indices,
)
from datamodules.video import read_frames, video_frame_count, write_mp4  # noqa: E402

SMALL = {"train_per_category": 2, "few_shot_train": 1, "eval_per_category": 2, "min_frames": 24, "max_frames": 40,
         "num_frames": 8, "image_size": (32, 32), "batch_size": 4}


@pytest.fixture(scope="module")
def ui_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ui_cache")


def rows_of(csv_path: str) -> list[dict[str, str]]:
    with open(csv_path, newline="") as f:
        return list(csv.DictReader(f))


def template_pattern(template: str) -> re.Pattern:
    parts = re.split(r"\{\w+\}", template)
    return re.compile("^" + "(.+)".join(re.escape(p) for p in parts) + "$")


@pytest.mark.parametrize("ui_set", ["iit", "iiw"])
def test_generator_writes_decodable_videos_whose_annotations_match(ui_cache, ui_set):
    dm = UIRecordingsDataModule(synthetic=ui_set, cache_dir=str(ui_cache), **SMALL)
    dm.prepare_data()
    assert dm.generation_seconds is not None and dm.generation_seconds < 30
    root = Path(dm.root)
    assert root.parent == ui_cache / ui_set and (root / "params.json").is_file()
    by_split: dict[str, list[dict[str, str]]] = {}
    for split in SPLITS:
        rows = by_split[split] = rows_of(str(root / split / "annotations.csv"))
        assert rows and sorted(p.name for p in (root / split).glob("*.mp4")) == sorted(r["video"] for r in rows)
        for r in rows:
            n = int(r["frames"])
            assert SMALL["min_frames"] <= n <= SMALL["max_frames"]
            assert video_frame_count(str(root / split / r["video"])) == n
            cat = CATEGORIES[r["category"]]
            assert r["category"] in UI_SETS[ui_set]
            if ui_set == "iit":  # lexicalised: the template with its slots filled
                assert template_pattern(cat.template).match(r["intent"]), (r["intent"], cat.template)
            else:
                assert r["intent"] == cat.delexicalised
    lengths = [int(r["frames"]) for rows in by_split.values() for r in rows]
    assert len(set(lengths)) > 5  # variable length
    # every frame of a recording decodes, and the screen changes over time (taps, typing, navigation)
    first = by_split["train"][0]
    video = read_frames(str(root / "train" / first["video"]), range(int(first["frames"])))
    assert video.shape == (3, int(first["frames"]), 112, 64) and video.dtype == torch.uint8
    changes = (video[:, 1:].float() - video[:, :-1].float()).abs().mean(dim=(0, 2, 3))
    assert (changes > 0.5).sum() >= 3
    # categories: zero-shot ones are held out of train; few-shot ones have few_shot_train examples there
    cats = {s: {r["category"] for r in rows} for s, rows in by_split.items()}
    assert cats["zero_shot"] and not cats["zero_shot"] & cats["train"]
    assert cats["few_shot"] <= cats["train"]
    train_counts = {c: sum(r["category"] == c for r in by_split["train"]) for c in cats["train"]}
    assert all(train_counts[c] == SMALL["few_shot_train"] for c in cats["few_shot"])
    assert len(cats["train"] | cats["zero_shot"]) == len(UI_SETS[ui_set])
    assert dm.categories_of("zero_shot") == sorted(cats["zero_shot"])
    # cached: the same parameters reuse the folder; others get another one
    again = UIRecordingsDataModule(synthetic=ui_set, cache_dir=str(ui_cache), **SMALL)
    again.prepare_data()
    assert again.root == dm.root and again.generation_seconds is None
    other = UIRecordingsDataModule(synthetic=ui_set, cache_dir=str(ui_cache), **{**SMALL, "gen_seed": 1})
    assert other.root != dm.root and not other.generated


def test_synthetic_batches(ui_cache):
    dm = UIRecordingsDataModule(synthetic="iit", cache_dir=str(ui_cache), val_split="zero_shot", **SMALL)
    dm.setup("fit")
    batch = dm.on_before_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert batch["video"].shape == (4, 3, 8, 32, 32) and batch["video"].dtype == torch.float32
    assert len(batch["intent"]) == len(batch["path"]) == 4 and all(isinstance(s, str) for s in batch["intent"])
    assert batch["category"].dtype == torch.int64 and dm.num_classes == 10 and len(dm.category_names) == 10
    for path, category in zip(batch["path"], batch["category"].tolist()):
        split_rows = {r["video"]: r for r in rows_of(str(Path(path).parent / "annotations.csv"))}
        assert dm.category_names[category] == split_rows[Path(path).name]["category"]
    val = [dm.category_names[c] for b in dm.val_dataloader() for c in b["category"].tolist()]
    assert sorted(set(val)) == dm.categories_of("zero_shot")  # val_split picks the zero-shot split
    assert not set(val) & set(dm.categories_of("train"))


# ------------------------------------------------------------------------------------------- release layout
def level(i: int) -> int:
    return 10 + 6 * i


def ramp(n: int) -> np.ndarray:
    """Frame i is flat at level(i): the frame index can be read from the pixels."""
    return np.stack([np.full((32, 48, 3), level(i), np.uint8) for i in range(n)])


@pytest.fixture
def release(tmp_path) -> Path:
    """A release-like folder with its own column names: clip,description,label_name (+ an unused column)."""
    root = tmp_path / "release"
    files = {"train": [("a.mov", 31, "search for shoes", "search"), ("b.mp4", 20, "turn on wi-fi", "settings"),
                       ("short.mp4", 3, "open mail", "open"), ("broken.mp4", None, "call bob", "call")],
             "few_shot": [("c.mp4", 24, "turn on dark mode", "settings")],
             "zero_shot": [("d.mp4", 18, "send a message to Ann", "message")]}
    for split, entries in files.items():
        (root / split).mkdir(parents=True)
        with open(root / split / "annotations.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["clip", "description", "label_name", "annotator"])
            for name, n, intent, cat in entries:
                if n is None:
                    (root / split / name).write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
                else:
                    write_mp4(str(root / split / name), ramp(n), fps=10, options={"crf": "0"})
                w.writerow([name, intent, cat, "x"])
    return root


COLUMNS = {"video_column": "clip", "intent_column": "description", "category_column": "label_name"}


def test_release_layout_custom_columns_short_and_corrupt(release):
    dm = UIRecordingsDataModule(root=str(release), num_frames=4, image_size=(32, 48), normalize=False,
                                batch_size=8, **COLUMNS)
    with pytest.warns(UserWarning, match=r"dropped 1 train recording\(s\) shorter than num_frames=4: short.mp4"):
        dm.setup("fit")
    assert dm.dropped_short["train"] == ["short.mp4 (3 frames)"]
    assert dm.category_names == ["call", "message", "open", "search", "settings"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batch = dm.on_before_batch_transfer(next(iter(dm.train_eval_dataloader())), 0)
    assert any(issubclass(w.category, SkippedSampleWarning) and "broken.mp4" in str(w.message) for w in caught)
    assert list(dm.skipped_files) == [str(release / "train" / "broken.mp4")]
    assert [Path(p).name for p in batch["path"]] == ["a.mov", "b.mp4"]
    assert batch["intent"] == ["search for shoes", "turn on wi-fi"]
    assert batch["category"].tolist() == [3, 4]
    video = batch["video"]
    assert video.shape == (2, 3, 4, 32, 48) and video.dtype == torch.uint8
    # uniform over the WHOLE video: first and last frame included
    read = [[round((m - 10) / 6) for m in v.float().mean(dim=(0, 2, 3)).tolist()] for v in video]
    assert read == [uniform_indices(31, 4), uniform_indices(20, 4)] == [[0, 10, 20, 30], [0, 6, 13, 19]]
    dm.setup("test")
    test = next(iter(dm.test_dataloader()))
    assert test["intent"] == ["send a message to Ann"] and dm.category_names[int(test["category"])] == "message"


def test_missing_column_is_a_clear_error(release):
    csv_path = str(release / "train" / "annotations.csv")
    with pytest.raises(ValueError, match=re.escape(f"{csv_path}: no column 'video' (video_column='video');"
                                                   " its columns are ['clip', 'description', 'label_name',"
                                                   " 'annotator']")):
        UIRecordingsDataModule(root=str(release), num_frames=4).setup("fit")
    with pytest.raises(ValueError, match="no column 'category' \\(category_column='category'\\)"):
        read_ui_annotations(csv_path, video_column="clip", intent_column="description")
    with pytest.raises(FileNotFoundError, match="annotations.csv"):
        UIRecordingsDataModule(root=str(release), few_shot_split="fewshot", num_frames=4, **COLUMNS).setup("fit")


def test_uniform_indices():
    assert uniform_indices(16, 16) == list(range(16))
    assert uniform_indices(100, 5) == [0, 25, 50, 74, 99]
    assert uniform_indices(9, 1) == [4]
