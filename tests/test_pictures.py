"""MaskPictures: the pure drawing functions, and pictures written to TensorBoard during a tiny fit."""

import logging

import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from test_ijepa import tiny_ijepa

from datamodules import DigitsDataModule
from jepa_lightning.eval import MaskPictures
from jepa_lightning.eval.pictures import PALETTE, frame_strip, mask_overlay, pca_rgb, to_unit
from jepa_lightning.masks import Masks


def test_mask_overlay_marks_target_patches_in_their_colours_and_keeps_context():
    # a 2x3 grid of 2-px patches; tokens: context {0, 1}, block 0 = {2}, block 1 = {4, 5}, token 3 is neither
    torch.manual_seed(0)
    images = torch.rand(1, 3, 4, 6)
    masks = Masks(context=torch.tensor([[0, 1]]), targets=torch.tensor([[[2, 2], [4, 5]]]))
    out = mask_overlay(images, masks, (2, 3), patch_size=2)
    assert out.shape == (1, 3, 4, 6)

    def patch(x, token):
        r, c = divmod(token, 3)
        return x[0, :, 2 * r:2 * r + 2, 2 * c:2 * c + 2]

    for token in (0, 1):  # context: unchanged
        assert torch.equal(patch(out, token), patch(images, token))
    for token, block in ((2, 0), (4, 1), (5, 1)):  # targets: half image, half the block's colour
        expected = 0.5 * patch(images, token) + 0.5 * PALETTE[block].view(3, 1, 1)
        assert torch.allclose(patch(out, token), expected)
    assert torch.allclose(patch(out, 3), 0.3 * patch(images, 3))  # neither: darkened
    # a patch in two blocks shows the mean of their colours
    both = mask_overlay(torch.zeros(1, 3, 4, 6), Masks(torch.tensor([[0]]), torch.tensor([[[1], [1]]])), (2, 3))
    mean = (PALETTE[0] + PALETTE[1]) / 2
    assert torch.allclose(patch(both, 1), 0.5 * mean.view(3, 1, 1).expand(3, 2, 2))


def test_mask_overlay_rejects_a_wrong_patch_size_and_draws_video_per_tubelet_slice():
    masks = Masks(context=torch.tensor([[0]]), targets=torch.tensor([[[3]]]))
    with pytest.raises(ValueError, match="grid of 3-px patches"):
        mask_overlay(torch.rand(1, 3, 4, 4), masks, (2, 2), patch_size=3)
    # clip of 4 frames, grid (2, 1, 2): tubelet 2, 2x2-px patches; token 3 = slice 1 (frames 2-3), right half
    video = torch.ones(1, 1, 4, 2, 4)  # one channel, shown grey
    out = mask_overlay(video, masks, (2, 1, 2))
    assert out.shape == (1, 3, 4, 2, 4)
    assert torch.equal(out[0, :, :2, :, :2], torch.ones(3, 2, 2, 2))  # token 0 (context) in frames 0-1
    colour = 0.5 + 0.5 * PALETTE[0]
    assert torch.allclose(out[0, :, 2:, :, 2:], colour.view(3, 1, 1, 1).expand(3, 2, 2, 2))
    assert torch.allclose(out[0, :, :2, :, 2:], torch.full((3, 2, 2, 2), 0.3))


def test_pca_rgb_is_in_unit_range_and_separates_two_clusters():
    torch.manual_seed(0)
    b, h, w, d = 2, 4, 4, 16
    direction = torch.randn(d)
    labels = torch.rand(b, h * w) < 0.5
    labels[0, 0], labels[0, 1] = True, False
    tokens = torch.where(labels[..., None], direction, -direction) * 5 + 0.1 * torch.randn(b, h * w, d)
    rgb = pca_rgb(tokens, (h, w))
    assert rgb.shape == (b, 3, h, w)
    assert rgb.min() >= 0 and rgb.max() <= 1
    flat = rgb.flatten(2).transpose(1, 2)  # [B, N, 3]
    a, c = flat[labels], flat[~labels]
    # the first component (red) splits them: every token of one cluster is redder than every one of the other
    lo, hi = (a, c) if a[:, 0].mean() < c[:, 0].mean() else (c, a)
    assert hi[:, 0].min() - lo[:, 0].max() > 0.9
    # three components from features with fewer dimensions: black channels, no error
    assert pca_rgb(torch.randn(1, 4, 2), (2, 2))[:, 2].abs().max() == 0
    with pytest.raises(ValueError, match="do not fill the token grid"):
        pca_rgb(torch.randn(1, 5, 8), (2, 2))


def test_frame_strip_and_to_unit():
    video = torch.arange(2 * 3 * 4 * 5, dtype=torch.float).view(2, 3, 4, 5)  # [C=2, T=3, H=4, W=5]
    strip = frame_strip(video)
    assert strip.shape == (3, 4, 15)
    assert torch.equal(strip[:, :, 5:10], video.mean(0, keepdim=True).expand(3, -1, -1, -1)[:, 1])
    assert frame_strip(torch.rand(2, 3, 3, 4, 5)).shape == (2, 3, 4, 15)
    x = to_unit(torch.randn(3, 3, 8, 8) * 7 - 2)
    assert torch.allclose(x.flatten(1).min(1).values, torch.zeros(3))
    assert torch.allclose(x.flatten(1).max(1).values, torch.ones(3))


def _fit(tmp_path, logger, steps=3, model=None):
    torch.manual_seed(0)
    trainer = Trainer(max_steps=steps, accelerator="cpu", logger=logger, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                      callbacks=[MaskPictures(every_n_steps=2, num_images=3)], default_root_dir=tmp_path)
    trainer.fit(model or tiny_ijepa(), datamodule=DigitsDataModule(image_size=16, batch_size=8, num_workers=0))
    return trainer


def test_fit_writes_mask_and_pca_images_to_tensorboard(tmp_path, one_thread):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = TensorBoardLogger(tmp_path, name="tb")
    _fit(tmp_path, logger)
    events = EventAccumulator(logger.log_dir, size_guidance={"images": 0})
    events.Reload()
    assert {"masks", "pca"} <= set(events.Tags()["images"])
    masks, pca = events.Images("masks"), events.Images("pca")
    assert [e.step for e in masks] == [1, 2] and [e.step for e in pca] == [1, 2]  # first step, then every 2
    # three 16-px images in a row (make_grid pads by 2 px); pca: inputs above their PCA
    assert (masks[0].width, masks[0].height) == (3 * 18 + 2, 18 + 2)
    assert (pca[0].width, pca[0].height) == (3 * 18 + 2, 2 * 18 + 2)


def test_fit_without_tensorboard_logs_nothing_and_does_not_crash(tmp_path, one_thread, caplog):
    with caplog.at_level(logging.INFO):
        _fit(tmp_path, CSVLogger(tmp_path), steps=2)
    assert sum("no TensorBoardLogger" in r.getMessage() for r in caplog.records) == 1


def test_a_drawing_error_warns_once_and_training_goes_on(tmp_path, one_thread):
    model = tiny_ijepa()
    model.encode = lambda batch: torch.zeros(batch["image"].size(0), 5, 32)  # 5 tokens: not the 4x4 grid
    with pytest.warns(UserWarning, match="MaskPictures: drawing failed at step 1 .*do not fill the token grid"):
        trainer = _fit(tmp_path, TensorBoardLogger(tmp_path, name="tb"), steps=3, model=model)
    assert trainer.global_step == 3


class _Experiment:
    def __init__(self):
        self.images = {}

    def add_image(self, tag, image, step):
        self.images[tag] = (image, step)


def test_video_pictures_are_frame_strips_one_clip_per_row():
    # 2 clips of 4 frames of 8x8 px on a (2, 2, 2) token grid (tubelet 2, 4-px patches)
    torch.manual_seed(0)
    pictures, experiment = MaskPictures(num_images=2), _Experiment()
    pictures._logger = type("Logger", (), {"experiment": experiment})()
    masks = [Masks(torch.tensor([[0, 1, 2], [4, 5, 6], [0, 0, 0]]), torch.tensor([[[7]], [[3]], [[1]]]))]
    pictures._draw(torch.randn(2, 3, 4, 8, 8), masks, torch.randn(2, 8, 5), (2, 2, 2), step=7)
    image, step = experiment.images["masks"]
    assert step == 7 and image.shape == (3, 2 * (8 + 2) + 2, 4 * 8 + 4)  # one 4-frame strip per clip
    image, _ = experiment.images["pca"]
    assert image.shape == (3, 4 * (8 + 2) + 2, 4 * 8 + 4)  # each clip's strip above its PCA strip


def test_video_fit_writes_frame_strips(tmp_path, one_thread):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from test_video_methods import clips, encoder, predictor

    from jepa_lightning.methods import VJEPA

    data = torch.utils.data.DataLoader([{"video": v} for v in clips(8)], batch_size=4)
    logger = TensorBoardLogger(tmp_path, name="tb")
    trainer = Trainer(max_steps=2, accelerator="cpu", logger=logger, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False,
                      callbacks=[MaskPictures(every_n_steps=10, num_images=2)], default_root_dir=tmp_path)
    trainer.fit(VJEPA(encoder(), predictor()), data)
    events = EventAccumulator(logger.log_dir, size_guidance={"images": 0})
    events.Reload()
    masks, pca = events.Images("masks"), events.Images("pca")
    assert len(masks) == len(pca) == 1  # only the first step: the next is step 10
    assert (masks[0].width, masks[0].height) == (4 * 16 + 4, 2 * 18 + 2)  # two 4-frame strips of 16 px
    assert (pca[0].width, pca[0].height) == (4 * 16 + 4, 4 * 18 + 2)
