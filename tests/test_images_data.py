"""Image DataModules: batch contract, skip-and-report of unreadable files, clear errors, digits."""

from __future__ import annotations

import ast
import logging
import math
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from datamodules import (
    SKIPPED_KEY,
    DigitsDataModule,
    ImageFolderDataModule,
    JEPADataModule,
    Skipped,
    SkippedSampleWarning,
    collate_skipping,
)
from datamodules.digits import load_digits, stratified_split
from datamodules.images import IMAGENET_MEAN, IMAGENET_STD

BRIGHT, DARK = 220, 30  # class "cat" images are bright, class "dog" images dark: the label is visible
SIZE = 16


def _img(path: Path, mode: str, value: int, size=(40, 28)) -> None:
    if mode == "L":
        img = Image.new("L", size, value)
    elif mode == "RGBA":
        img = Image.new("RGBA", size, (value, value, value, 255))
    elif mode == "P":  # palette with a transparent (unused) entry
        img = Image.new("P", size, 0)
        img.putpalette([value] * 3 + [0, 255, 0] + [0] * 762)
        img.info["transparency"] = 1
    else:
        img = Image.new("RGB", size, (value, value, value))
    kw = {"transparency": 1} if mode == "P" else {}
    img.save(path, **kw)


def _good_png_bytes(tmp: Path) -> bytes:
    p = tmp / "_tmp.png"
    Image.effect_noise((64, 64), 50).convert("RGB").save(p)
    data = p.read_bytes()
    p.unlink()
    return data


def make_tree(root: Path, bad: bool = True) -> list[str]:
    """Two classes; returns the paths of the unreadable files."""
    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            (root / split / cls).mkdir(parents=True)
    t = root / "train"
    _img(t / "cat" / "c0.png", "RGB", BRIGHT)
    _img(t / "cat" / "c1.jpg", "RGB", BRIGHT, (28, 40))
    _img(t / "cat" / "c2.png", "L", BRIGHT)  # grayscale
    _img(t / "cat" / "c3.JPEG", "RGB", BRIGHT)  # upper-case extension
    _img(t / "dog" / "d0.png", "RGB", DARK)
    _img(t / "dog" / "d1.jpg", "RGB", DARK)
    _img(t / "dog" / "d2.png", "RGBA", DARK)
    _img(t / "dog" / "d3.png", "P", DARK)
    (t / "cat" / "notes.txt").write_text("not an image, ignored by extension")
    for cls, value in (("cat", BRIGHT), ("dog", DARK)):
        _img(root / "val" / cls / "v0.png", "RGB", value)
        _img(root / "val" / cls / "v1.jpg", "L", value)
    if not bad:
        return []
    rng = np.random.default_rng(0)
    bad_files = {
        t / "cat" / "corrupt.png": rng.integers(0, 256, 500, dtype=np.uint8).tobytes(),  # random bytes
        t / "cat" / "truncated.png": _good_png_bytes(root)[:200],  # valid header, data cut off
        t / "dog" / "empty.jpg": b"",  # zero bytes
        t / "dog" / "text.png": b"hello, I am a text file with a .png name\n",
    }
    for path, data in bad_files.items():
        path.write_bytes(data)
    return sorted(str(p) for p in bad_files)


def _denorm(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return x * std + mean


def _check_batch(batch: dict, max_b: int) -> None:
    assert set(batch) == {"image", "label"}
    x, y = batch["image"], batch["label"]
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.ndim == 4 and x.shape[1:] == (3, SIZE, SIZE) and 1 <= x.shape[0] <= max_b
    assert y.shape == (x.shape[0],)
    # cat (label 0) images are uniformly BRIGHT, dog (label 1) DARK: the normalization must invert exactly
    expected = torch.where(y == 0, BRIGHT / 255, DARK / 255).view(-1, 1, 1, 1)
    assert (_denorm(x) - expected).abs().max() < 0.03


class Recorder(L.LightningModule):
    """Reads batch keys only, as a method does; returns None for a None batch."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.train_batches: list[dict] = []
        self.val_batches: list[dict | None] = []

    def training_step(self, batch, batch_idx):
        if batch is None:
            raise AssertionError(
                "Lightning's training loop skips None batches; training_step must not see one"
            )
        self.train_batches.append(batch)
        return (self.w * batch["image"].mean()).sum() + self.w.square().sum()

    def validation_step(self, batch, batch_idx):
        self.val_batches.append(batch)
        return None

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(model: L.LightningModule, dm: L.LightningDataModule) -> None:
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=dm)


# ------------------------------------------------------------------------------ image folders
@pytest.mark.parametrize("num_workers", [0, 2])
def test_image_folder_trains_and_reports_skipped(tmp_path, num_workers, caplog):
    bad = make_tree(tmp_path)
    dm = ImageFolderDataModule(
        str(tmp_path), image_size=SIZE, batch_size=4, num_workers=num_workers, pin_memory=False
    )
    assert dm.classes == ["cat", "dog"] and dm.num_classes == 2
    model = Recorder()
    with caplog.at_level(logging.WARNING, logger="datamodules.common"):
        with pytest.warns(SkippedSampleWarning) as record:
            _fit(model, dm)

    for batch in model.train_batches:
        _check_batch(batch, 4)
    labels = torch.cat([b["label"] for b in model.train_batches])
    assert sorted(labels.tolist()) == [0, 0, 0, 0, 1, 1, 1, 1]  # the 8 readable images, once each
    assert sorted(torch.cat([b["label"] for b in model.val_batches]).tolist()) == [0, 0, 1, 1]

    assert sorted(dm.skipped_files) == bad
    assert dm.skipped_count == 4
    warned = " ".join(str(w.message) for w in record)
    for path in bad:
        assert path in warned
    assert "4 unreadable file(s)" in dm.skipped_summary()
    if num_workers == 0:  # the per-sample log of the dataset (in workers it goes to the worker's stderr)
        logged = caplog.text
        assert all(path in logged for path in bad)


def test_train_eval_loader_unaugmented_and_ordered(tmp_path):
    bad = make_tree(tmp_path)
    dm = ImageFolderDataModule(str(tmp_path), image_size=SIZE, batch_size=3, num_workers=0, pin_memory=False)
    loader = dm.train_eval_dataloader()
    assert loader.persistent_workers is False and loader.drop_last is False

    def run():
        out = []
        for batch in loader:
            batch = dm.on_before_batch_transfer(batch, 0)  # what the Trainer calls; pops "_skipped"
            if batch is not None:
                _check_batch(batch, 3)
                out.append(batch)
        return out

    with pytest.warns(SkippedSampleWarning):
        first = run()
    with warnings.catch_warnings():
        warnings.simplefilter("error", SkippedSampleWarning)  # known files are not warned again
        second = run()
    assert sorted(dm.skipped_files) == bad and dm.skipped_count == 8  # two passes
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    assert torch.cat([b["label"] for b in first]).tolist() == [0, 0, 0, 0, 1, 1, 1, 1]  # folder order


def test_loader_options(tmp_path):
    make_tree(tmp_path, bad=False)
    dm = ImageFolderDataModule(str(tmp_path), image_size=SIZE, batch_size=2, num_workers=2, pin_memory=False)
    dm.setup("fit")
    train, val = dm.train_dataloader(), dm.val_dataloader()
    assert train.persistent_workers and train.drop_last and train.num_workers == 2
    from datamodules import EpochSampler

    assert isinstance(train.sampler, EpochSampler) and train.sampler.shuffle
    assert isinstance(val.sampler, torch.utils.data.SequentialSampler) and not val.drop_last
    assert train.collate_fn is collate_skipping
    dm0 = ImageFolderDataModule(str(tmp_path), image_size=SIZE, batch_size=2, num_workers=0)
    dm0.setup("fit")
    assert dm0.train_dataloader().persistent_workers is False
    big = ImageFolderDataModule(str(tmp_path), image_size=SIZE, batch_size=64, num_workers=0)
    big.setup("fit")
    with pytest.raises(ValueError, match=r"8 samples.*batch_size=64"):
        big.train_dataloader()


def test_every_sample_unreadable_gives_none_batches(tmp_path):
    for split in ("train", "val"):
        for cls in ("a", "b"):
            (tmp_path / split / cls).mkdir(parents=True)
            (tmp_path / split / cls / "x.jpg").write_bytes(b"")
            (tmp_path / split / cls / "y.png").write_bytes(b"not a png")
    dm = ImageFolderDataModule(str(tmp_path), image_size=SIZE, batch_size=2, num_workers=0, pin_memory=False)
    model = Recorder()
    with pytest.warns(SkippedSampleWarning):
        _fit(model, dm)
    assert model.train_batches == []  # Lightning skipped training_step for the None batches
    assert model.val_batches == [None, None]  # the evaluation loops pass None on to validation_step
    assert len(dm.skipped_files) == 8


def test_collate_drops_and_attaches_skipped():
    good = {"image": torch.zeros(3, 4, 4), "label": 1}
    s1, s2 = Skipped("/data/a.png", "OSError: bad"), Skipped("/data/b.jpg", "OSError: empty")
    batch = collate_skipping([good, s1, good, s2])
    assert batch["image"].shape == (2, 3, 4, 4) and batch["label"].tolist() == [1, 1]
    assert batch[SKIPPED_KEY] == [s1, s2]
    assert SKIPPED_KEY not in collate_skipping([good, good])

    all_bad = collate_skipping([s1, s2])
    assert all_bad == {SKIPPED_KEY: [s1, s2]}  # the report still travels to the main process
    dm = JEPADataModule(batch_size=2, num_workers=0)
    with pytest.warns(SkippedSampleWarning, match="a.png"):
        assert dm.on_before_batch_transfer(all_bad, 0) is None
    assert dm.skipped_files == {"/data/a.png": "OSError: bad", "/data/b.jpg": "OSError: empty"}
    assert dm.on_before_batch_transfer(None, 0) is None
    out = dm.on_before_batch_transfer(batch, 0)  # already-known files: counted, not warned again
    assert set(out) == {"image", "label"} and dm.skipped_count == 4


def test_datamodule_leaves_method_batch_hooks_alone():
    # Lightning calls the DataModule's version of a batch hook instead of the method's when both exist:
    # overriding these would silently disable the method's on-device mask generation.
    for cls in (JEPADataModule, ImageFolderDataModule, DigitsDataModule):
        for hook in ("on_after_batch_transfer", "transfer_batch_to_device"):
            assert getattr(cls, hook) is getattr(L.LightningDataModule, hook)


def test_datamodules_import_nothing_from_methods():
    """DESIGN: arrows point one way; a DataModule never depends on a method."""
    pkg = Path(__file__).resolve().parents[1] / "datamodules"
    for path in pkg.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(n.startswith(("jepa_lightning.methods", "jepa_lightning.cli")) for n in names), path


# ------------------------------------------------------------------------------------- errors
def test_missing_root(tmp_path):
    root = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="nope") as err:
        ImageFolderDataModule(str(root))
    assert "train/" in str(err.value) and "val/" in str(err.value) and "class" in str(err.value)


def test_root_without_train_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "train")):
        ImageFolderDataModule(str(tmp_path))
    (tmp_path / "train").mkdir()
    with pytest.raises(FileNotFoundError, match="no class sub-folders"):
        ImageFolderDataModule(str(tmp_path))


def test_no_images_found(tmp_path):
    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            (tmp_path / split / cls / "readme.txt").write_text("no images here")
    dm = ImageFolderDataModule(str(tmp_path), num_workers=0)
    with pytest.raises(FileNotFoundError, match="no images found") as err:
        dm.setup("fit")
    assert str(tmp_path / "train") in str(err.value) and ".jpg" in str(err.value) and ".png" in str(err.value)


def test_mismatched_val_classes(tmp_path):
    for split, classes in (("train", ("cat", "dog")), ("val", ("cat", "bird"))):
        for cls in classes:
            (tmp_path / split / cls).mkdir(parents=True)
    with pytest.raises(ValueError, match="class folders") as err:
        ImageFolderDataModule(str(tmp_path))
    msg = str(err.value)
    assert "dog" in msg and "bird" in msg and str(tmp_path / "val") in msg


# ------------------------------------------------------------------------------------- digits
@pytest.fixture(scope="module")
def digits() -> DigitsDataModule:
    dm = DigitsDataModule(batch_size=64, num_workers=0, pin_memory=False)
    dm.setup("fit")
    return dm


def test_digits_split(digits):
    tr, va = digits.train_indices, digits.val_indices
    assert len(tr) + len(va) == 1797 and len(va) == math.ceil(0.2 * 1797)
    assert len(set(tr.tolist()) | set(va.tolist())) == 1797  # disjoint and complete
    assert len(digits.train_dataset) == len(tr) and len(digits.val_dataset) == len(va)
    val_counts = torch.bincount(digits.val_dataset.labels, minlength=10)
    train_counts = torch.bincount(digits.train_dataset.labels, minlength=10)
    assert (val_counts > 0).all() and digits.num_classes == 10
    # stratified: every class keeps its share (~10% each; load_digits has 174..183 per class)
    assert ((val_counts.float() / (val_counts + train_counts) - 0.2).abs() < 0.01).all()
    assert (train_counts >= 139).all() and (train_counts <= 147).all()

    again = DigitsDataModule(num_workers=0)
    again.setup("fit")
    assert np.array_equal(again.train_indices, tr) and np.array_equal(again.val_indices, va)
    other = DigitsDataModule(split_seed=1, num_workers=0)
    other.setup("fit")
    assert not np.array_equal(np.sort(other.val_indices), np.sort(va))


def test_digits_are_scikit_learns_bit_for_bit(digits):
    """`datamodules.digits` reads scikit-learn's file and splits as `train_test_split` does, without importing
    scikit-learn (tests/test_import_footprint.py): the same arrays, dtypes included, for several splits."""
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    data, target = load_digits()
    reference = sklearn_digits()
    for ours, theirs in ((data, reference.data), (target, reference.target)):
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape and np.array_equal(ours, theirs)
    cases = [(target, f, seed) for f in (0.2, 0.1, 0.25, 0.5, 0.05) for seed in range(4)]
    rng = np.random.default_rng(0)  # small label sets: ties between the classes' remainders
    cases += [(np.repeat(np.arange(k), rng.integers(2, 9, k)), f, 7) for k in (2, 3, 5) for f in (0.3, 0.45)]
    for labels, fraction, seed in cases:
        ours = stratified_split(labels, fraction, seed)
        theirs = train_test_split(np.arange(len(labels)), test_size=fraction, stratify=labels, random_state=seed)
        for a, b in zip(ours, theirs, strict=True):
            assert a.dtype == b.dtype and np.array_equal(a, b), (len(labels), fraction, seed)
    assert np.array_equal(digits.train_indices, stratified_split(target, 0.2, 0)[0])


def test_digits_batches_and_values(digits):
    batch = digits.on_before_batch_transfer(next(iter(digits.train_dataloader())), 0)
    assert set(batch) == {"image", "label"}
    x, y = batch["image"], batch["label"]
    assert x.shape == (64, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])  # replicated gray
    val = torch.stack([digits.val_dataset[i]["image"] for i in range(len(digits.val_dataset))])
    assert val.min() >= -1.0 - 1e-6 and val.max() <= 1.0 + 1e-6  # [0, 1] with mean 0.5, std 0.5
    assert val.min() < -0.99 and val.max() > 0.99  # real digits: blank background and full ink
    assert 0 <= y.min() and y.max() <= 9


def test_digits_augmentation(digits):
    torch.manual_seed(0)
    ds = digits.train_dataset
    assert any(not torch.equal(ds[i]["image"], ds[i]["image"]) for i in range(5))  # random crops
    va = digits.val_dataset
    assert all(torch.equal(va[i]["image"], va[i]["image"]) for i in range(5))

    eval_loader = digits.train_eval_dataloader()
    assert isinstance(eval_loader.sampler, torch.utils.data.SequentialSampler)
    first = next(iter(eval_loader))
    assert torch.equal(first["image"], next(iter(eval_loader))["image"])  # unaugmented, same order
    assert torch.equal(first["label"], ds.labels[:64])
    assert torch.equal(first["image"][:, :1], ds.images[:64])  # exactly the stored, uncropped images


# --------------------------------------------------------- seeded order and augmentation (exact resume)
def _epoch_batches(dm, epoch):
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(epoch)
    return [dm.on_before_batch_transfer(b, 0) for b in loader]


def test_training_order_and_augmentation_are_functions_of_seed_and_epoch():
    from datamodules import EpochSampler

    dm0 = DigitsDataModule(image_size=16, batch_size=128, num_workers=0)
    dm2 = DigitsDataModule(image_size=16, batch_size=128, num_workers=2, persistent_workers=False)
    for dm in (dm0, dm2):
        dm.setup("fit")
    a, b = _epoch_batches(dm0, 3), _epoch_batches(dm2, 3)
    torch.manual_seed(123)  # the global RNG plays no part
    c = _epoch_batches(dm0, 3)
    for x, y, z in zip(a, b, c):
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["label"], y["label"])
        assert torch.equal(x["image"], z["image"])
    d = _epoch_batches(dm0, 4)
    assert not torch.equal(a[0]["label"], d[0]["label"])  # another epoch, another order
    # every sample once per epoch; a pass without set_epoch advances the epoch by itself
    s = EpochSampler(10, seed=1)
    first, second = [i for i, _ in s], [i for i, _ in s]
    assert sorted(first) == list(range(10)) and first != second
    s.set_epoch(0)
    assert [i for i, _ in s] == first


def test_epoch_sampler_deals_one_permutation_to_the_ranks():
    from datamodules import EpochSampler

    whole = [k for k in EpochSampler(10, seed=3, epoch=2)]
    shards = [list(EpochSampler(10, seed=3, epoch=2, num_replicas=3, rank=r)) for r in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]  # ceil(10 / 3), padded with the permutation's head
    dealt = [shards[i % 3][i // 3] for i in range(12)]
    assert dealt[:10] == whole and dealt[10:] == whole[:2]  # same keys (index, augmentation seed) as 1 rank
    # resumed mid-epoch: each rank skips only its own consumed samples
    resumed = EpochSampler(10, seed=3, epoch=2, num_replicas=3, rank=1, resume_offset=lambda: 2)
    assert list(resumed) == shards[1][2:]
    resumed.set_epoch(2)
    assert list(resumed) == shards[1]  # the offset applies to the first pass only
    with pytest.raises(ValueError, match="rank"):
        EpochSampler(10, num_replicas=2, rank=2)
