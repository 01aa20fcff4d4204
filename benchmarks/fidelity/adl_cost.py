"""Claim 4 of benchmarks/fidelity/adl_jepa.py (the protocol is in its docstring): the cost of one training step of
AD-L-JEPA and of OccupancyMAE, each measured in a fresh process on one thread (an ``adl_jepa.py --one cost``
worker)."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

TINY = {"point_cloud_range": (0.0, -20.0, -2.0, 40.0, 20.0, 1.0), "voxel_size": (0.25, 0.25, 0.5), "batch": 8}
LARGE = {"point_cloud_range": (0.0, -25.6, -3.0, 51.2, 25.6, 1.0), "voxel_size": (0.1, 0.1, 0.2), "batch": 2}


def grid_shape(grid: dict) -> str:
    """'ny x nx x nz' of a grid, e.g. '512 x 512 x 20'."""
    lo, hi, size = grid["point_cloud_range"][:3], grid["point_cloud_range"][3:], grid["voxel_size"]
    nx, ny, nz = (round((hi[i] - lo[i]) / size[i]) for i in range(3))
    return f"{ny} x {nx} x {nz}"


def cost_batch(datamodule: Callable[..., Any], grid: dict, path: Path) -> None:
    """The claim-4 batch (first validation frames, voxelized at `grid`; ``datamodule(seed, **kwargs)`` builds the
    LidarDataModule), saved for the measuring subprocesses."""
    dm = datamodule(0, point_cloud_range=grid["point_cloud_range"], voxel_size=grid["voxel_size"])
    batch = dm.val_dataset.__getitems__(list(range(grid["batch"])))
    partial = path.with_name(path.name + ".partial")
    torch.save({"bev": batch["bev"].contiguous()}, partial)
    partial.replace(path)


def memory_status() -> dict[str, int]:
    """VmRSS and VmHWM (the resident set's high-water mark) of this process, in bytes (Linux)."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1]) * 1024
    return out


def reset_peak() -> bool:
    """Resets VmHWM to the current resident set (Linux >= 4.0: ``5 > /proc/self/clear_refs``); False when the
    kernel refuses, then the peak includes the process's earlier high-water mark (imports)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure(model: Any, bev: torch.Tensor, steps: int) -> dict:
    """`model`'s (AD-L-JEPA or OccupancyMAE, just built) training-step time, peak memory and FLOPs on `bev` (run in
    a fresh process, one thread)."""
    from jepa_lightning.eval.flops import step_flops

    model.train()
    params = [p for m in model.trainable_modules() for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)
    g = torch.Generator().manual_seed(0)
    gc.collect()
    was_reset = reset_peak()
    base = memory_status()["VmRSS"]

    def step() -> float:
        t0 = time.perf_counter()
        batch = {"bev": bev}
        batch["masks"] = model.sample_masks(batch, g)
        opt.zero_grad(set_to_none=True)
        loss = model.objective(batch)[0]
        loss.backward()
        opt.step()
        if model.teacher is not None:
            model.teacher.update(model.encoder, 0.996)
        return time.perf_counter() - t0

    for _ in range(2):
        step()
    times = [step() for _ in range(steps)]
    peak = memory_status()["VmHWM"]
    batch = {"bev": bev}
    batch["masks"] = model.sample_masks(batch, g)
    flops = step_flops(model, batch)
    return {"ms_per_step": round(1000 * statistics.median(times), 1), "peak_mib": round((peak - base) / 2**20, 1),
            "rss_before_mib": round(base / 2**20, 1), "peak_reset": was_reset,
            "gflop_per_step": round(flops / 1e9, 3), "params": sum(p.numel() for p in params),
            "grid": list(bev.shape), "steps": steps}

