"""Video DataModules: real h264/vp9 files written with PyAV, sources, clip sampling, seeking, skipping, moving digits."""

from __future__ import annotations

import csv
import os
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

av = pytest.importorskip("av")

from datamodules import (  # noqa: E402
    MOTIONS,
    MovingDigitsDataModule,
    SeededSamples,
    SkippedReport,
    SkippedSampleWarning,
    VideoDataModule,
    clip_indices,
    read_frames,
    read_video_index,
    video_frame_count,
)
from datamodules.video import (  # noqa: E402
    ScaleNormalize,
    VideoClipDataset,
    VideoEvalTransform,
    moving_digit_trajectories,
)

H, W, CROP = 24, 32, 16  # non-square frames: evaluation views slide along the width
T, STEP = 4, 2  # clips span (T - 1) * STEP + 1 = 7 frames
MEAN = STD = (0.5, 0.5, 0.5)


def level(i: int) -> int:
    """Brightness of frame i of a ramp video: the frame index is readable from the pixels."""
    return 8 + 3 * i


def ramp_frames(n: int, h: int = H, w: int = W, texture: bool = False) -> np.ndarray:
    """uint8 [n, h, w, 3]: frame i is flat at level(i); with ``texture`` the bottom half is moving noise
    (so that the encoder uses P and B frames that really depend on their references)."""
    frames = np.stack([np.full((h, w, 3), level(i), np.uint8) for i in range(n)])
    if texture:
        noise = np.random.default_rng(0).integers(0, 256, (h // 2, w + n, 3), dtype=np.uint8)
        for i in range(n):
            frames[i, h // 2:] = noise[:, i:i + w]
    return frames


def frame_index(video_u8_or_float: torch.Tensor, rows: slice = slice(None)) -> list[int]:
    """Frame indices of a [C, T, H, W] clip of a ramp video (uint8, or normalized float with MEAN/STD)."""
    x = video_u8_or_float
    if x.is_floating_point():
        x = (x * 0.5 + 0.5) * 255
    means = x[:, :, rows].float().mean(dim=(0, 2, 3))
    return [round((m - 8) / 3) for m in means.tolist()]


def write_video(path: Path, frames: np.ndarray, codec: str = "libx264", fps: int = 30, **options: str) -> Path:
    opts = {"crf": "10", **options}
    if codec == "libvpx-vp9":
        opts = {"deadline": "realtime", "cpu-used": "8", "b:v": "0", **opts}
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps, options=opts)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def write_audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        for i in range(8):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def make_tree(root: Path) -> dict[str, str]:
    """train/{a,b}/ with 2 good videos each (h264 mp4 and vp9 webm) and broken files; val/{a,b}/ one each.
    Returns the broken files by kind."""
    for split in ("train", "val"):
        for cls in ("a", "b"):
            (root / split / cls).mkdir(parents=True)
    t = root / "train"
    good = write_video(t / "a" / "ramp.mp4", ramp_frames(40), g="8")
    write_video(t / "a" / "ramp.webm", ramp_frames(30), "libvpx-vp9")
    write_video(t / "b" / "ramp.mp4", ramp_frames(36))
    write_video(t / "b" / "ramp.webm", ramp_frames(40), "libvpx-vp9")
    write_video(root / "val" / "a" / "v.mp4", ramp_frames(20))
    write_video(root / "val" / "b" / "v.webm", ramp_frames(20), "libvpx-vp9")
    (t / "a" / ".hidden.mp4").write_bytes(b"ignored: hidden")
    (t / "b" / "notes.txt").write_text("ignored: not a video extension")
    data = good.read_bytes()
    bad = {
        "truncated": t / "a" / "truncated.mp4",
        "empty": t / "b" / "empty.mp4",
        "text": t / "b" / "text.mp4",
        "short": write_video(t / "a" / "short.mp4", ramp_frames(5)),
        "audio": write_audio_only(t / "b" / "audio.mp4"),
    }
    bad["truncated"].write_bytes(data[: len(data) // 2])
    bad["empty"].write_bytes(b"")
    bad["text"].write_text("hello, I am a text file with an .mp4 name\n")
    return {k: str(v) for k, v in bad.items()}


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("videos")
    return root, make_tree(root)


def tree_dm(root: Path, **kw) -> VideoDataModule:
    args = dict(train=str(root / "train"), val=str(root / "val"), frames_per_clip=T, frame_step=STEP,
                crop_size=CROP, mean=MEAN, std=STD, hflip=False, short_videos="skip", batch_size=2,
                num_workers=0, pin_memory=False, drop_last=False)
    return VideoDataModule(**{**args, **kw})


def batches(dm, loader) -> list[dict]:
    out = [dm.on_before_batch_transfer(b, 0) for b in loader]
    return [b for b in out if b is not None]


# ---------------------------------------------------------------------------- folder tree, h264 + vp9
def test_folder_tree_batches_and_skipped(tree):
    root, bad = tree
    dm = tree_dm(root)
    assert dm.classes == ["a", "b"] and dm.num_classes == 2 and dm.label_names == ["label"]
    dm.setup("fit")
    assert len(dm.train_dataset) == 9  # 4 good + 5 broken; hidden file and .txt ignored
    with pytest.warns(SkippedSampleWarning) as record:
        train = batches(dm, dm.train_dataloader())
    labels = []
    for b in train:
        assert set(b) == {"video", "label"}
        assert b["video"].dtype == torch.float32 and b["label"].dtype == torch.int64
        assert b["video"].shape[1:] == (3, T, CROP, CROP) and b["label"].shape == (len(b["video"]),)
        labels += b["label"].tolist()
    assert sorted(labels) == [0, 0, 1, 1]  # the 4 readable videos, once each
    assert sorted(dm.skipped_files) == sorted(bad.values())
    warned = " ".join(str(w.message) for w in record)
    assert all(path in warned for path in bad.values())
    assert "has 5 frames, a clip needs 7" in dm.skipped_files[bad["short"]]
    assert "no video stream" in dm.skipped_files[bad["audio"]]
    assert all("Error" in dm.skipped_files[bad[k]] for k in ("truncated", "empty", "text"))  # PyAV's errors

    # evaluation: centred clip, frames at the right indices (mp4 and webm alike), labels in folder order
    val = batches(dm, dm.val_dataloader())
    x = torch.cat([b["video"] for b in val])
    assert x.shape == (2, 3, T, CROP, CROP) and torch.cat([b["label"] for b in val]).tolist() == [0, 1]
    for clip in x:  # 20 frames, span 7: start (20 - 7) // 2 = 6
        assert frame_index(clip) == [6, 8, 10, 12]
    with warnings.catch_warnings():
        warnings.simplefilter("error", SkippedSampleWarning)  # known files are not warned again
        ev = batches(dm, dm.train_eval_dataloader())
    clips = torch.cat([b["video"] for b in ev])  # the readable videos in folder order: 40, 30, 36, 40 frames
    assert [frame_index(c)[0] for c in clips] == [(n - 7) // 2 for n in (40, 30, 36, 40)]


def test_eval_clips_and_views(tree):
    root, _ = tree
    dm = tree_dm(root, eval_clips=3, eval_views=2)
    dm.setup("validate")
    sample = dm.val_dataset[0]  # 20 frames: clip starts 0, 6, 13
    v = sample["video"]
    assert v.shape == (6, 3, T, CROP, CROP)  # clips x views, clip-major
    idx = [frame_index(c)[0] for c in v]
    assert idx == [0, 0, 6, 6, 13, 13]
    # the two views of a clip: left and right crops of the resized frame (H 24 -> 16, W 32 -> 21)
    ramp = torch.from_numpy(ramp_frames(20)).permute(3, 0, 1, 2)[:, [0, 2, 4, 6]]
    ramp[:, :, :, :10] = 0  # a dark left part shows which view is which
    views = VideoEvalTransform(CROP, 2, MEAN, STD)(ramp.permute(1, 0, 2, 3))
    assert views.shape == (2, 3, T, CROP, CROP)
    assert views[0].mean() < views[1].mean()  # left view holds the dark part
    batch = next(iter(dm.val_dataloader()))
    assert batch["video"].shape == (2, 6, 3, T, CROP, CROP)


def test_training_num_clips_shape(tree):
    root, _ = tree
    dm = tree_dm(root, num_clips=2, short_videos="loop")
    dm.setup("fit")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedSampleWarning)
        train = batches(dm, dm.train_dataloader())
    for b in train:
        assert b["video"].shape[1:] == (2, 3, T, CROP, CROP)
        for clips in b["video"]:  # clip 0 starts in the first half of the valid starts, clip 1 in the second
            assert frame_index(clips[0])[0] <= frame_index(clips[1])[0]


# ------------------------------------------------------------------------------------ short videos
@pytest.mark.parametrize("policy,expected", [("loop", [0, 2, 4, 1]), ("pad", [0, 2, 4, 4])])
def test_short_video_loop_and_pad(tree, policy, expected):
    root, bad = tree
    dm = tree_dm(root, short_videos=policy)
    dm.setup("fit")
    ds = dm.train_eval_dataset
    i = [p for p, _ in ds.samples].index(bad["short"])
    assert frame_index(ds[i]["video"]) == expected
    torch.manual_seed(0)
    assert frame_index(dm.train_dataset.read(i)[0]) == expected  # training clips too (uint8 reader output)


def test_clip_indices():
    assert clip_indices(20, 4, 2).tolist() == [[6, 8, 10, 12]]
    assert clip_indices(20, 4, 2, 3).tolist() == [[0, 2, 4, 6], [6, 8, 10, 12], [13, 15, 17, 19]]
    draws = torch.tensor([0.0, 0.999])
    assert clip_indices(20, 4, 2, 2, draws)[:, 0].tolist() == [0, 13]  # each in its half of starts 0..13
    assert clip_indices(7, 4, 2, 1, torch.tensor([0.99])).tolist() == [[0, 2, 4, 6]]  # exactly one start
    with pytest.raises(ValueError, match="has 6 frames, a clip needs 7"):
        clip_indices(6, 4, 2, short_videos="skip")


# --------------------------------------------------------------------------------------- seeking
@pytest.mark.parametrize("codec", ["libx264", "libvpx-vp9"])
def test_seek_gives_the_same_frames_as_decoding_from_the_start(tmp_path, codec):
    n = 72
    ext = "mp4" if codec == "libx264" else "webm"
    options = {"g": "8"} if codec == "libvpx-vp9" else {"g": "8", "x264-params": "bframes=3:b-adapt=0"}
    path = str(write_video(tmp_path / f"long.{ext}", ramp_frames(n, 32, 48, texture=True), codec, **options))
    if codec == "libx264":  # the file really has B frames and keyframes every 8 frames
        with av.open(path) as c:
            kinds = [(f.key_frame, f.pict_type) for f in c.decode(video=0)]
        assert sum(k for k, _ in kinds) >= n // 8 and any(t == av.video.frame.PictureType.B for _, t in kinds)
    assert video_frame_count(path) == n
    top = slice(0, 12)  # the flat half
    for indices in ([41, 43, 45, 47, 49], [5, 6, 50, 51, n - 1], [n - 1, 0, 33], [17]):
        sought = read_frames(path, indices, seek=True)
        decoded = read_frames(path, indices, seek=False)
        assert torch.equal(sought, decoded), indices
        assert frame_index(sought, top) == list(indices)
    with pytest.raises(ValueError, match="ended"):
        read_frames(path, [n + 3])


def test_wrong_frame_count_is_corrected_by_decoding(tree):
    root, _ = tree
    dm = tree_dm(root)
    dm.setup("validate")
    ds = dm.val_dataset
    path = ds.samples[1][0]  # 20-frame webm
    with av.open(path) as c:
        assert c.streams.video[0].frames == 0  # webm has no frame count: duration, checked on the last packets
    assert path.endswith(".webm") and ds.num_frames(path) == 20
    ds.frame_counts[path] = 100  # as if the metadata claimed 100 frames
    assert frame_index(ds[1]["video"]) == [6, 8, 10, 12]  # the read ran out of frames, recounted, re-read
    assert ds.frame_counts[path] == 20


def test_seek_landing_after_the_clip_falls_back_to_the_start(tmp_path, monkeypatch):
    from datamodules.video import codec

    path = str(write_video(tmp_path / "v.mp4", ramp_frames(48, texture=True), g="8"))
    expected = read_frames(path, [20, 22, 24], seek=False)
    late = codec._Timing.pts
    monkeypatch.setattr(codec._Timing, "pts", lambda self, i: late(self, i + 12 if i else 0))  # seeks 12 frames late
    assert torch.equal(read_frames(path, [20, 22, 24], seek=True), expected)


def test_file_cut_short_with_its_index_first_gives_its_readable_frames(tmp_path):
    path = tmp_path / "cut.mp4"
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:  # index (moov) before the data
        stream = container.add_stream("libx264", rate=30, options={"crf": "10"})
        stream.height, stream.width = H, W
        for frame in ramp_frames(60, texture=True):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert video_frame_count(str(path)) == 60  # what the index claims
    ds = VideoClipDataset([(str(path), {"label": 0})], VideoEvalTransform(CROP, 1, MEAN, STD), T, STEP)
    clip = ds[0]["video"]  # the read runs out of frames: recounted by decoding, the clip re-drawn inside them
    n = ds.frame_counts[str(path)]
    assert 5 < n < 60 and frame_index(clip, slice(0, 6)) == [(n - 7) // 2 + k for k in (0, 2, 4, 6)]


def test_scale_normalize_matches_torchvision():
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    x = torch.randint(0, 256, (4, 8, 8, 3), dtype=torch.uint8).permute(0, 3, 1, 2)  # channels-last, as decoded
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    ref = v2.Normalize(mean, std)(v2.ToDtype(torch.float32, scale=True)(tv_tensors.Video(x)))
    for inp in (x, x.contiguous()):
        assert torch.allclose(ScaleNormalize(mean, std)(inp), ref, atol=1e-5)


# ------------------------------------------------------------------------------ reproducible clips
def test_training_clips_are_functions_of_the_sample_seed(tree):
    root, _ = tree
    dm = tree_dm(root, crop_scale=(0.3, 1.0))
    dm.setup("fit")
    seeded = SeededSamples(dm.train_dataset)
    i = [p for p, _ in dm.train_dataset.samples].index(str(root / "train" / "a" / "ramp.mp4"))
    a, b = seeded[(i, 123)]["video"], seeded[(i, 123)]["video"]
    torch.manual_seed(5)  # the global RNG plays no part
    c = seeded[(i, 123)]["video"]
    assert torch.equal(a, b) and torch.equal(a, c)
    others = [seeded[(i, s)]["video"] for s in range(1, 6)]
    assert all(not torch.equal(a, o) for o in others)
    starts = {frame_index(o)[0] for o in others}
    assert len(starts) > 1  # random starts (not only random crops)

    def epoch(workers):
        d = tree_dm(root, num_workers=workers, persistent_workers=False, short_videos="loop")
        d.setup("fit")
        loader = d.train_dataloader()
        loader.sampler.set_epoch(2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SkippedSampleWarning)
            return batches(d, loader)

    for x, y in zip(epoch(0), epoch(2), strict=True):  # the same clips with worker processes
        assert torch.equal(x["video"], y["video"]) and torch.equal(x["label"], y["label"])


# -------------------------------------------------------------------------------- list file and csv
def test_list_file_and_csv_sources(tree, tmp_path):
    root, _ = tree
    lists = tmp_path / "lists"
    lists.mkdir()
    rel = os.path.relpath(root / "train" / "a" / "ramp.mp4", lists)
    (lists / "train.txt").write_text(f"{rel} 3\n\n{root / 'train' / 'b' / 'ramp.webm'} 1\n")
    samples = read_video_index(str(lists / "train.txt"))
    assert samples == [(str(root / "train" / "a" / "ramp.mp4"), {"label": 3}),
                       (str(root / "train" / "b" / "ramp.webm"), {"label": 1})]
    dm = VideoDataModule(str(lists / "train.txt"), frames_per_clip=T, frame_step=STEP, crop_size=CROP,
                         batch_size=2, num_workers=0, pin_memory=False)
    assert dm.num_classes == 4 and dm.label_names == ["label"] and dm.classes is None
    dm.setup("fit")
    b = next(iter(dm.train_dataloader()))
    assert sorted(b["label"].tolist()) == [1, 3] and b["video"].shape == (2, 3, T, CROP, CROP)

    with open(lists / "train.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "digit", "motion"])
        w.writerow([rel, 7, 2])
        w.writerow([str(root / "train" / "b" / "ramp.mp4"), 1, 5])
    dm = VideoDataModule(str(lists / "train.csv"), label="motion", frames_per_clip=T, frame_step=STEP,
                         crop_size=CROP, batch_size=2, num_workers=0, pin_memory=False, drop_last=False)
    assert dm.num_classes == 6 and dm.label_names == ["label", "digit", "motion"]
    dm.setup("fit")
    b = next(iter(dm.train_eval_dataloader()))
    assert set(b) == {"video", "label", "digit", "motion"}
    assert b["label"].tolist() == b["motion"].tolist() == [2, 5] and b["digit"].tolist() == [7, 1]
    assert all(v.dtype == torch.int64 for k, v in b.items() if k != "video")


def test_source_errors(tmp_path):
    bad_list = tmp_path / "bad.txt"
    bad_list.write_text("a.mp4 1\n\nb.mp4 one\n")
    with pytest.raises(ValueError, match=r"bad\.txt:3: expected '<path> <integer label>'.*'b\.mp4 one'"):
        read_video_index(str(bad_list))
    bad_list.write_text("only_a_path.mp4\n")
    with pytest.raises(ValueError, match=r"bad\.txt:1: .*'only_a_path\.mp4'"):
        read_video_index(str(bad_list))

    table = tmp_path / "t.csv"
    table.write_text("path,digit,motion\na.mp4,1,2\n")
    with pytest.raises(ValueError, match=r"t\.csv: no label column 'color'.*\['path', 'digit', 'motion'\]"):
        VideoDataModule(str(table), label="color")
    with pytest.raises(ValueError, match="no label column 'label'"):
        VideoDataModule(str(table))
    table.write_text("path,digit,motion\na.mp4,1,2\nb.mp4,x,3\n")
    with pytest.raises(ValueError, match=r"t\.csv:3: column 'digit' must be an integer label, got 'x'"):
        read_video_index(str(table), label="digit")
    table.write_text("file,digit\na.mp4,1\n")
    with pytest.raises(ValueError, match="'path' column"):
        read_video_index(str(table), label="digit")

    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="nope") as err:
        VideoDataModule(str(missing))
    msg = str(err.value)
    assert "class sub-folders" in msg and "list file" in msg and ".csv" in msg

    for kw, match in ((dict(frames_per_clip=0), "frames_per_clip"), (dict(crop_scale=(0.5, 1.5)), "crop_scale"),
                      (dict(short_videos="wrap"), "short_videos"), (dict(std=(0.5, 0.0, 0.5)), "std"),
                      (dict(decode_threads=-1), "decode_threads")):
        with pytest.raises(ValueError, match=match):
            VideoDataModule(str(table), label="digit", **kw)


# ------------------------------------------------------------------------------------- moving digits
@pytest.fixture(scope="module")
def digits_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


TINY = dict(num_train=16, num_val=8, video_frames=16, batch_size=8, num_workers=0, pin_memory=False)


def test_moving_digits_files_cache_and_batches(digits_cache):
    dm = MovingDigitsDataModule(cache_dir=str(digits_cache), **TINY)
    assert dm.num_classes == 10 and dm.label_names == ["label", "digit", "motion"] and not dm.generated
    dm.prepare_data()
    assert dm.generated and dm.generation_seconds is not None
    folder = Path(dm.data_dir)
    assert folder.parent == digits_cache and [p.name for p in digits_cache.iterdir()] == [folder.name]
    videos = sorted(folder.glob("*/*.mp4"))
    assert len(videos) == 24
    with av.open(str(videos[0])) as c:
        s = c.streams.video[0]
        assert c.format.name.startswith("mov,mp4") and s.codec_context.name == "h264"
        assert s.codec_context.pix_fmt == "yuv420p" and (s.width, s.height) == (32, 32) and s.frames == 16

    mtime = (folder / "train.csv").stat().st_mtime_ns
    again = MovingDigitsDataModule(cache_dir=str(digits_cache), label="motion", **TINY)
    assert again.data_dir == dm.data_dir and again.generated and again.num_classes == 8
    again.setup("fit")  # no regeneration
    assert again.generation_seconds is None and (folder / "train.csv").stat().st_mtime_ns == mtime
    other = MovingDigitsDataModule(cache_dir=str(digits_cache), **{**TINY, "gen_seed": 1})
    assert other.data_dir != dm.data_dir and not other.generated

    with warnings.catch_warnings():
        warnings.simplefilter("error", SkippedSampleWarning)
        train = batches(again, again.train_dataloader())
        val = batches(again, again.val_dataloader())
    assert len(train) == 2 and len(val) == 1
    for b in train + val:
        assert set(b) == {"video", "label", "digit", "motion"} and b["video"].shape == (8, 3, 8, 32, 32)
        assert torch.equal(b["label"], b["motion"])
        assert 0 <= b["digit"].min() and b["digit"].max() <= 9 and 0 <= b["motion"].min() and b["motion"].max() <= 7
    motions = torch.cat([b["motion"] for b in train])
    assert torch.bincount(motions, minlength=8).tolist() == [2] * 8  # balanced
    # val videos show digit images no train video shows: the same fixed stratified split of sklearn's digits
    rows = {split: list(csv.DictReader(open(folder / f"{split}.csv"))) for split in ("train", "val")}
    assert rows["train"][0].keys() == {"path", "digit", "motion"} and len(rows["val"]) == 8


def test_moving_digits_generation_race(tmp_path, monkeypatch):
    from datamodules.video import moving_digits

    real = moving_digits.generate_moving_digits
    dm = MovingDigitsDataModule(cache_dir=str(tmp_path), **TINY)

    def slow_generation(folder, **kw):  # another process finishes first, while this one is still writing
        real(folder, **kw)
        other = tmp_path / "other"
        real(str(other), **kw)
        (other / "params.json").write_text("{}")
        os.replace(other, dm.data_dir)

    monkeypatch.setattr(moving_digits, "generate_moving_digits", slow_generation)
    dm.prepare_data()  # loses the race: uses theirs, leaves no temporary folder behind
    assert dm.generated and dm.generation_seconds is None
    assert [p.name for p in tmp_path.iterdir()] == [Path(dm.data_dir).name]
    assert (Path(dm.data_dir) / "params.json").read_text() == "{}"


def centre_of_mass(path: str) -> np.ndarray:
    x = read_frames(path, range(video_frame_count(path)))[0].float()  # [T, H, W]
    mass = x.sum(dim=(1, 2))
    ys, xs = torch.arange(x.shape[1]).float(), torch.arange(x.shape[2]).float()
    return torch.stack([(x.sum(1) * xs).sum(1) / mass, (x.sum(2) * ys).sum(1) / mass], 1).numpy()  # [T, (x, y)]


def test_moving_digits_motion_is_there(digits_cache):
    dm = MovingDigitsDataModule(cache_dir=str(digits_cache), **TINY)
    dm.prepare_data()
    rows = list(csv.DictReader(open(Path(dm.data_dir) / "train.csv")))
    for name, axis, sign in (("right", 0, 1), ("left", 0, -1), ("down", 1, 1), ("up", 1, -1)):
        for row in (r for r in rows if MOTIONS[int(r["motion"])] == name):
            com = centre_of_mass(str(Path(dm.data_dir) / row["path"]))
            steps = sign * np.diff(com[:, axis])
            assert sign * (com[-1, axis] - com[0, axis]) > 2.0, (name, com[:, axis])
            assert (steps > -0.3).all()  # monotonic up to compression noise
            assert np.abs(com[-1, 1 - axis] - com[0, 1 - axis]) < 1.0  # the other coordinate stays


def test_moving_digits_trajectories_hide_the_motion_in_single_frames():
    rng = np.random.default_rng(0)
    motions = np.repeat(np.arange(8), 2000)
    traj = moving_digit_trajectories(motions, 32, 32, 14, rng)  # [N, F, 4]
    frame = traj[np.arange(len(motions)), rng.integers(32, size=len(motions))]  # one random frame per video
    per_class = frame.reshape(8, 2000, 4)
    # every parameter has the same distribution at a random frame whatever the motion (means and spreads)
    assert np.ptp(per_class.mean(1), axis=0).max() < 0.05 * np.ptp(frame, axis=0).max()
    assert (np.ptp(per_class.std(1), axis=0) < 0.06 * frame.std(0)).all()
    moves = np.abs(traj[:, -1] - traj[:, 0]) > 1e-6
    assert (moves.argmax(1) == motions // 2).all() and (moves.sum(1) == 1).all()  # exactly one moves


# -------------------------------------------------------------------------------------- SkippedReport
class MeanProbe(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(1, 1)

    def training_step(self, batch, batch_idx):
        return self.lin(batch["video"].mean(dim=(1, 2, 3, 4)).unsqueeze(1)).square().mean()

    def validation_step(self, batch, batch_idx):
        return None

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_skipped_report(tree):
    root, bad = tree
    dm = tree_dm(root)
    trainer = L.Trainer(accelerator="cpu", max_epochs=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        callbacks=[SkippedReport()])
    with pytest.warns(SkippedSampleWarning) as record:
        trainer.fit(MeanProbe(), datamodule=dm)
    reports = [str(w.message) for w in record if str(w.message).startswith("epoch ")]
    assert len(reports) == 1 and reports[0].startswith("epoch 0: 5 unreadable file(s) skipped")  # none new in epoch 1
    assert all(path in reports[0] for path in bad.values())
    assert trainer.callback_metrics["data/skipped_files"].item() == 5

    report = SkippedReport()
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[report])
    with pytest.warns(SkippedSampleWarning) as record:
        trainer.validate(MeanProbe(), datamodule=dm)
    assert any(str(w.message).startswith("validate: 5 unreadable") for w in record)
    assert trainer.callback_metrics["data/skipped_files"].item() == 5
