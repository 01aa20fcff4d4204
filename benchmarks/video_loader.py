"""Video loading speed on this machine: training clips/s through VideoDataModule's DataLoader (PyAV decoding,
clip sampling, RandomResizedCrop, normalization, collation), seeking vs decoding from the start.

    python benchmarks/video_loader.py [--quick] [--workers 0 2]

Writes synthetic h264 mp4 videos once into a temporary folder (224x224, 30 fps, a keyframe every 32 frames,
moving blurred noise plus moving blobs plus grain, so that the encoder has real work), then times batches of
the train DataLoader (after a few warm-up batches) for each worker count, with ``seek=True`` (seek to the
keyframe before the clip) and ``seek=False`` (decode from the first frame). Also times the
MovingDigitsDataModule default configuration (its cache is generated first if missing; ``prepare_s`` says
how long that took) and compares it with what the tiny V-JEPA recipe consumes when it never waits for data
(``loader_over_training``: the loader must be at least 2x faster). Prints one JSON object; clips/s counts
clips (samples), not frames.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from datamodules import MovingDigitsDataModule, VideoDataModule
from datamodules.video import write_mp4

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def synthetic_video(frames: int, size: int, seed: int) -> np.ndarray:
    """uint8 [frames, size, size, 3]: a blurred noise texture drifting, 6 moving colour blobs, grain."""
    g = torch.Generator().manual_seed(seed)
    big = size + frames * 2
    texture = torch.rand(1, 3, big // 4, big // 4, generator=g)
    texture = F.interpolate(texture, size=(big, big), mode="bicubic", align_corners=False)[0].clamp(0, 1) * 160
    out = torch.stack([texture[:, t:t + size, 2 * t:2 * t + size] for t in range(frames)])  # [F, 3, S, S]
    t = torch.arange(frames).float().view(-1, 1, 1)
    pos = (torch.rand(1, 6, 2, generator=g) * size + (torch.rand(1, 6, 2, generator=g) - 0.5) * 6 * t) % size
    radius = (8 + torch.rand(1, 6, 1, generator=g) * 16)
    axis = torch.arange(size).float().view(1, 1, -1)
    gx = torch.exp(-((axis - pos[..., 0:1]) ** 2) / (2 * radius**2))  # [F, 6, S] (separable Gaussians)
    gy = torch.exp(-((axis - pos[..., 1:2]) ** 2) / (2 * radius**2))
    colour = torch.rand(6, 3, generator=g) * 120
    out += torch.einsum("bc,fby,fbx->fcyx", colour, gy, gx)
    out += torch.randn(out.shape, generator=g) * 6
    return out.clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def clips_per_second(dm, warmup: int, batches: int) -> float:
    """Clips/s over ``batches`` training batches after ``warmup`` ones (epochs restart when one runs out)."""
    dm.setup("fit")
    loader = dm.train_dataloader()

    def endless():
        while True:
            yield from loader

    it = endless()
    for _ in range(warmup):
        next(it)
    clips, t0 = 0, time.perf_counter()
    for _ in range(batches):
        batch = dm.on_before_batch_transfer(next(it), 0)
        clips += len(batch["video"])
    rate = clips / (time.perf_counter() - t0)
    it.close()
    return round(rate, 2)


def training_consumption(cache_dir: str | None, digits_kw: dict, steps: int) -> dict:
    """Samples/s the tiny V-JEPA recipe (`recipes/vjepa/tiny.yaml`) consumes when it never waits for data:
    its model trained on one loaded batch (masks, objective, backward, AdamW, EMA), the machine's threads."""
    from jepa_lightning.cli import JEPACLI
    from jepa_lightning.masks import step_generator

    overrides = [f"--data.init_args.{k}={v}" for k, v in digits_kw.items()]
    if cache_dir is not None:
        overrides.append(f"--data.init_args.cache_dir={cache_dir}")
    cli = JEPACLI(run=False, args=["--config", str(RECIPES / "vjepa" / "tiny.yaml"), "--trainer.logger=false",
                                   *overrides])
    model, dm = cli.model, cli.datamodule
    dm.prepare_data()
    dm.setup("fit")
    batch = dm.on_before_batch_transfer(next(iter(dm.train_dataloader())), 0)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.total_steps = steps

    def step(i: int) -> None:
        batch["masks"] = model.sample_masks(batch, step_generator(0, 0, i))
        loss = model.objective(batch)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.teacher.update(model.encoder, 0.998)

    for i in range(2):
        step(i)
    t0 = time.perf_counter()
    for i in range(steps):
        step(i)
    seconds = (time.perf_counter() - t0) / steps
    return {"batch_size": dm.batch_size, "ms_per_step": round(seconds * 1e3, 1),
            "samples_per_s": round(dm.batch_size / seconds, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a fast smoke run: few short videos, few batches")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--videos", type=int, default=12)
    ap.add_argument("--video-frames", type=int, default=160)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--gop", type=int, default=32, help="keyframe interval of the synthetic videos (x264 g)")
    ap.add_argument("--frames-per-clip", type=int, default=16)
    ap.add_argument("--frame-step", type=int, default=4)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--decode-threads", type=int, default=0, help="FFmpeg decoder threads per video (0: default)")
    ap.add_argument("--digits-batches", type=int, default=8)
    ap.add_argument("--cache-dir", default=None, help="MovingDigits cache (default: the DataModule's default)")
    args = ap.parse_args()
    if args.quick:
        args.videos, args.video_frames, args.batch, args.warmup, args.batches = 3, 64, 4, 1, 2
        args.digits_batches = 2
    torch.manual_seed(0)
    load_at_start = os.getloadavg()[0]  # other processes on the machine skew every number below

    with tempfile.TemporaryDirectory(prefix="video_loader_") as tmp:
        t0 = time.perf_counter()
        paths = []
        for i in range(args.videos):
            path = os.path.join(tmp, f"v{i:03d}.mp4")
            write_mp4(path, synthetic_video(args.video_frames, args.size, i), 30, {"g": str(args.gop)})
            paths.append(path)
        write_s = time.perf_counter() - t0
        mb = sum(os.path.getsize(p) for p in paths) / 1e6
        # each video listed several times, so that an epoch holds every timed batch
        need = (args.warmup + args.batches) * args.batch
        repeat = -(-need // len(paths))
        listing = os.path.join(tmp, "train.txt")
        with open(listing, "w") as f:
            f.writelines(f"{os.path.basename(p)} {i % 2}\n" for _ in range(repeat) for i, p in enumerate(paths))

        h264 = {}
        for workers in args.workers:
            for seek in (True, False):
                dm = VideoDataModule(listing, frames_per_clip=args.frames_per_clip, frame_step=args.frame_step,
                                     crop_size=args.size, seek=seek, decode_threads=args.decode_threads,
                                     batch_size=args.batch, num_workers=workers, pin_memory=False,
                                     persistent_workers=False)
                key = f"workers{workers}_{'seek' if seek else 'from_start'}"
                h264[key] = clips_per_second(dm, args.warmup, args.batches)
                print(f"{key}: {h264[key]} clips/s", file=sys.stderr)

        # the decoder alone (one process): what seeking saves before the transforms
        decode_ms = {}
        for seek in (True, False):
            dm = VideoDataModule(listing, frames_per_clip=args.frames_per_clip, frame_step=args.frame_step,
                                 crop_size=args.size, seek=seek, decode_threads=args.decode_threads, num_workers=0)
            dm.setup("fit")
            ds = dm.train_dataset
            torch.manual_seed(0)
            ds.read(0)
            reads = max(args.batches * args.batch // 2, 4)
            t0 = time.perf_counter()
            for i in range(reads):
                ds.read(i % len(ds))
            decode_ms["seek" if seek else "from_start"] = round((time.perf_counter() - t0) / reads * 1e3, 1)

        digits_kw = {}
        cache_ctx = tempfile.TemporaryDirectory(prefix="moving_digits_") if args.quick else None
        if args.quick:
            digits_kw = dict(num_train=16, num_val=8, video_frames=16, batch_size=8)
            cache_dir = cache_ctx.name
        else:
            cache_dir = args.cache_dir
        probe = MovingDigitsDataModule(cache_dir=cache_dir, **digits_kw)
        generated = not probe.generated
        t0 = time.perf_counter()
        probe.prepare_data()
        prepare_s = time.perf_counter() - t0
        digits: dict = {"prepare_s": round(prepare_s, 2), "generated_now": generated,
                        "batch_size": probe.batch_size, "default_num_workers": probe.num_workers}
        for workers in args.workers:
            dm = MovingDigitsDataModule(cache_dir=cache_dir, num_workers=workers, pin_memory=False,
                                        persistent_workers=False, **digits_kw)
            digits[f"workers{workers}"] = clips_per_second(dm, 1, args.digits_batches)
            print(f"moving digits workers{workers}: {digits[f'workers{workers}']} clips/s", file=sys.stderr)
        consumption = training_consumption(cache_dir, digits_kw, 3 if args.quick else 20)
        digits["tiny_recipe_training"] = consumption
        digits["loader_over_training"] = {f"workers{w}": round(digits[f"workers{w}"] / consumption["samples_per_s"], 2)
                                          for w in args.workers}
        print(f"tiny V-JEPA recipe consumes {consumption['samples_per_s']} samples/s", file=sys.stderr)
        if cache_ctx is not None:
            cache_ctx.cleanup()

    print(json.dumps({
        "benchmark": "video_loader",
        "config": {"videos": args.videos, "video_frames": args.video_frames, "size": args.size, "fps": 30,
                   "gop": args.gop, "codec": "h264 (libx264, yuv420p)", "video_mb": round(mb, 2),
                   "write_s": round(write_s, 2), "frames_per_clip": args.frames_per_clip,
                   "frame_step": args.frame_step, "crop_size": args.size, "batch": args.batch,
                   "warmup_batches": args.warmup, "timed_batches": args.batches,
                   "decode_threads": args.decode_threads, "quick": args.quick,
                   "moving_digits": "MovingDigitsDataModule defaults" + (" (tiny, quick)" if args.quick else "")},
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "av": __import__("av").__version__, "load_avg_1min_at_start": round(load_at_start, 2),
                    "load_avg_1min_at_end": round(os.getloadavg()[0], 2)},
        "h264_224": h264,
        "decode_ms_per_clip": decode_ms,  # read() alone: open, seek, decode, RGB; no transform
        "seek_speedup": {f"workers{w}": round(h264[f"workers{w}_seek"] / h264[f"workers{w}_from_start"], 2)
                         for w in args.workers},
        "moving_digits": digits,
    }, indent=2))


if __name__ == "__main__":
    main()
