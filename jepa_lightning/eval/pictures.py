"""Pictures of what a JEPA sees and learns: its masks over the inputs, and a PCA of its patch features.

Pure, vectorized functions (`mask_overlay`, `pca_rgb`, `frame_strip`, `to_unit`) and the `MaskPictures`
callback that logs them to TensorBoard during `fit`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn
from torchvision.utils import make_grid

from jepa_lightning.masks.utils import Masks

__all__ = ["MaskPictures", "frame_strip", "mask_overlay", "pca_rgb", "to_unit", "PALETTE"]

# One colour per target block (cycled beyond ten): tab10.
PALETTE = torch.tensor([[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
                        [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207]]) / 255.0


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """[B, ...] -> float in [0, 1], each sample min-max scaled over all its values (so any input
    normalization, or uint8, displays)."""
    x = x.detach().float()
    flat = x.flatten(1)
    lo, hi = flat.min(1).values, flat.max(1).values
    shape = (-1,) + (1,) * (x.dim() - 1)
    return (x - lo.view(shape)) / (hi - lo).clamp_min(1e-8).view(shape)


def _rgb(x: torch.Tensor) -> torch.Tensor:
    """[B, C, ...] -> [B, 3, ...]: three channels kept, anything else shown as the channel mean (grey)."""
    return x if x.size(1) == 3 else x.mean(1, keepdim=True).expand(-1, 3, *x.shape[2:])


def _upsample(maps: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """[B, C, *grid] -> [B, C, *size], every cell repeated (nearest, exact) over its patch."""
    for d, (g, s) in enumerate(zip(maps.shape[2:], size)):
        if s % g:
            raise ValueError(f"input size {list(size)} is not a multiple of the token grid {list(maps.shape[2:])}")
        maps = maps.repeat_interleave(s // g, dim=2 + d)
    return maps


def mask_maps(masks: Masks, num_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Index masks -> boolean maps: context [B, N], targets [B, T, N]."""
    context = torch.zeros(masks.context.size(0), num_tokens, dtype=torch.bool, device=masks.context.device)
    context.scatter_(1, masks.context, True)
    b, t, _ = masks.targets.shape
    targets = torch.zeros(b, t, num_tokens, dtype=torch.bool, device=masks.targets.device)
    targets.scatter_(2, masks.targets, True)
    return context, targets


def mask_overlay(images: torch.Tensor, masks: Masks, grid_size: Sequence[int], patch_size: int | None = None,
                 alpha: float = 0.5, shade: float = 0.3) -> torch.Tensor:
    """Masks drawn over inputs in [0, 1]: images [B, C, H, W] on an (h, w) token grid, or clips [B, C, F, H, W]
    on a (t, h, w) grid (each tubelet slice's masks drawn on all its frames).

    Context patches are shown as they are; patches in neither context nor target are darkened (x `shade`); each
    target block gets its colour from `PALETTE` blended in with weight `alpha` (a patch in several blocks gets the
    mean of their colours). `patch_size` (pixels per token side) defaults to image side / grid side and is
    checked against the input. Returns [B, 3, H, W] (or [B, 3, F, H, W]).
    """
    grid = tuple(int(g) for g in grid_size)
    size = tuple(images.shape[2:])
    if len(size) != len(grid):
        raise ValueError(f"mask_overlay: input {list(images.shape)} does not match the {len(grid)}-d grid {grid}")
    if patch_size is not None and any(s != g * patch_size for s, g in zip(size[-2:], grid[-2:])):
        raise ValueError(f"mask_overlay: input {list(size)} is not a {list(grid)} grid of {patch_size}-px patches")
    context, targets = mask_maps(masks, math.prod(grid))
    hits = targets.float()  # [B, T, N]
    colours = PALETTE.to(images.device)[torch.arange(hits.size(1), device=images.device) % len(PALETTE)]
    colour = torch.einsum("btn,tc->bcn", hits, colours) / hits.sum(1, keepdim=True).clamp_min(1)
    maps = torch.cat([colour, targets.any(1, keepdim=True).float(), context[:, None].float()], 1)
    maps = _upsample(maps.view(maps.size(0), 5, *grid), size)
    colour, is_target, is_context = maps[:, :3], maps[:, 3:4] > 0, maps[:, 4:5] > 0
    rgb = _rgb(images.float())
    out = torch.where(is_context, rgb, shade * rgb)
    return torch.where(is_target, (1 - alpha) * rgb + alpha * colour, out)


def pca_rgb(tokens: torch.Tensor, grid_size: Sequence[int]) -> torch.Tensor:
    """The first three principal components of patch features as colours: tokens [B, N, D] on a grid with
    prod(grid) = N -> [B, 3, *grid] in [0, 1].

    The components are fitted jointly over all B*N tokens (centred, exact SVD), so colours compare across the
    images; each is min-max scaled to [0, 1] over those tokens, and its sign fixed so that its skew is positive
    (colours do not flip between calls on similar features). Fewer than three components -> black channels."""
    grid = tuple(int(g) for g in grid_size)
    b, n, d = tokens.shape
    if n != math.prod(grid):
        raise ValueError(f"pca_rgb: {n} tokens do not fill the token grid {list(grid)}")
    x = tokens.detach().float().reshape(b * n, d)
    x = x - x.mean(0)
    _, _, vh = torch.linalg.svd(x, full_matrices=False)
    proj = x @ vh[:3].T
    signs = torch.where((proj ** 3).sum(0) < 0, -1.0, 1.0)
    proj = proj * signs
    lo, hi = proj.min(0).values, proj.max(0).values
    rgb = (proj - lo) / (hi - lo).clamp_min(1e-8)
    rgb = torch.cat([rgb, rgb.new_zeros(b * n, 3 - rgb.size(1))], 1)
    return rgb.view(b, *grid, 3).movedim(-1, 1)


def frame_strip(video: torch.Tensor) -> torch.Tensor:
    """The frames of a clip side by side: [C, T, H, W] -> [3, H, T*W] (batched: [B, C, T, H, W] -> [B, 3, H, T*W])."""
    single = video.dim() == 4
    x = _rgb(video[None] if single else video)
    b, c, t, h, w = x.shape
    strip = x.permute(0, 1, 3, 2, 4).reshape(b, c, h, t * w)
    return strip[0] if single else strip


class MaskPictures(L.Callback):
    """Every `every_n_steps` optimizer steps (and after the first) log two pictures of the first
    `num_images` inputs of the training batch to TensorBoard:

    - `masks`: the inputs (min-max scaled) with the step's masks drawn by `mask_overlay` (context as is, the rest
      darkened, each target block in its colour). With several mask sets (V-JEPA's short- and long-range) the
      first is drawn; masks that are not `Masks` (e.g. BEV masks) are not drawn.
    - `pca`: the inputs above the first three PCA components of the evaluation network's patch features
      (`pl_module.encode`, `pca_rgb`), upsampled to the input size.

    Images ([B, C, H, W], 2-d token grid) form one row per picture; video ([B, C, T, H, W], 3-d grid
    `encoder.grid_size`) shows each clip as a frame strip, masks drawn per tubelet slice. Under DDP/FSDP every
    process encodes its own batch (the encoder may be sharded), only rank zero draws and logs. Without a
    `TensorBoardLogger` (or a module without `encode` / `encoder.grid_size`) it does nothing, with one message;
    an error while drawing is reported once as a warning and turns the callback off, it never stops a run.
    """

    def __init__(self, every_n_steps: int = 200, num_images: int = 4) -> None:
        super().__init__()
        if every_n_steps < 1 or num_images < 1:
            raise ValueError(f"MaskPictures needs every_n_steps >= 1 and num_images >= 1, "
                             f"got {every_n_steps} and {num_images}")
        self.every_n_steps, self.num_images = int(every_n_steps), int(num_images)
        self._logger: TensorBoardLogger | None = None
        self._last_step: int | None = None
        self._draw_failed = False

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._logger = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
        self._last_step = None
        if self._logger is None:
            rank_zero_info("MaskPictures: no TensorBoardLogger in this run; no pictures are logged")
        elif not hasattr(pl_module, "encode") or not hasattr(getattr(pl_module, "encoder", None), "grid_size"):
            rank_zero_info(f"MaskPictures: {type(pl_module).__name__} has no encode() or encoder.grid_size; "
                           "no pictures are logged")
            self._logger = None

    def _due(self, step: int) -> bool:
        # a function of the global step alone, so a resumed run draws exactly where the uninterrupted one did
        return step != self._last_step and (step == 1 or step % self.every_n_steps == 0)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if self._logger is None or not isinstance(batch, dict) or not self._due(step):
            return
        self._last_step = step
        n = self.num_images
        sliced = {k: v[:n] for k, v in batch.items() if isinstance(v, torch.Tensor) and v.dim() > 0}
        try:  # on every rank, as a sharded encoder gathers collectively; an error here is the same on every rank
            with torch.no_grad(), trainer.precision_plugin.forward_context():
                tokens = pl_module.encode(sliced)
        except Exception as err:  # a picture must never end a run
            rank_zero_warn(f"MaskPictures: encode failed at step {step} ({type(err).__name__}: {err}); "
                           "no more pictures are logged")
            self._logger = None
            return
        if trainer.is_global_zero and not self._draw_failed:
            try:
                self._draw(sliced[pl_module.input_key], batch.get("masks"), tokens,
                           tuple(pl_module.encoder.grid_size), step)
            except Exception as err:  # rank zero only: the other ranks keep encoding, so none waits for it
                rank_zero_warn(f"MaskPictures: drawing failed at step {step} ({type(err).__name__}: {err}); "
                               "no more pictures are logged")
                self._draw_failed = True

    @torch.no_grad()
    def _draw(self, x: torch.Tensor, masks: Any, tokens: torch.Tensor, grid: tuple[int, ...], step: int) -> None:
        if x.dim() != len(grid) + 2:
            raise ValueError(f"input {list(x.shape)} does not match the {len(grid)}-d token grid {list(grid)}")
        video = len(grid) == 3
        n = x.size(0)
        x01 = _rgb(to_unit(x))
        show = frame_strip if video else (lambda v: v)  # [n, 3, H, W'] rows
        experiment = self._logger.experiment
        if isinstance(masks, (list, tuple)) and masks:
            masks = masks[0]
        if isinstance(masks, Masks):
            m = Masks(masks.context[:n], masks.targets[:n])
            pics = show(mask_overlay(x01, m, grid))
            experiment.add_image("masks", make_grid(pics.cpu(), nrow=1 if video else n, pad_value=1.0), step)
        pca = _upsample(pca_rgb(tokens, grid), x.shape[2:])
        rows = torch.stack([show(x01), show(pca)], 1 if video else 0).flatten(0, 1)
        experiment.add_image("pca", make_grid(rows.cpu(), nrow=1 if video else n, pad_value=1.0), step)
