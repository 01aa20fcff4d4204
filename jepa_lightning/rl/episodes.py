"""The offline RL episode format (TD-JEPA, ACT-JEPA): what :func:`jepa_lightning.rl.collect.collect`, the
scripted experts and user tools write, and what :class:`datamodules.offline_rl.OfflineRLDataModule` reads.

The format, one episode per file (``.npz``, or ``.h5``/``.hdf5`` with one dataset per key), ``T`` steps:

================ ======================= ===================================================================
key              shape, dtype            meaning
================ ======================= ===================================================================
observation      ``[T+1, obs_dim]`` f32  flat state observation before each step, and after the last
action           ``[T, act_dim]`` f32    action taken at each step
terminal         ``[T]`` bool            the step ended in a terminal state (no bootstrapping after it)
physics          ``[T+1, P]`` f64        simulator state (e.g. MuJoCo qpos/qvel) for reward relabeling
pixels           ``[T+1, H, W, C]`` u8   rendered frames (optional)
reward           ``[T]`` f32             reward of the task the data was collected for (optional)
intrinsic_reward ``[T]`` f32             exploration bonus of each step (optional; ``collect --policy rnd``)
================ ======================= ===================================================================

``observation`` and ``action`` are required; ``terminal`` defaults to all ``False`` (dm_control episodes
end by time limit only). ``next observation`` is ``observation[1:]``: storing ``T+1`` rows keeps each row
once. A folder of episodes may carry a ``dataset.json`` with free-form metadata (domain, collection policy,
seed; :func:`write_metadata`), which :class:`OfflineRLDataModule` exposes as ``metadata``.
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

EPISODE_SUFFIXES = (".npz", ".h5", ".hdf5")
REQUIRED_KEYS = ("observation", "action")
OPTIONAL_KEYS = ("terminal", "physics", "pixels", "reward", "intrinsic_reward")
METADATA_FILE = "dataset.json"
# per key: (dtype stored, rows relative to T: 1 -> T+1 rows, 0 -> T rows, minimum ndim)
_SPEC: dict[str, tuple[Any, int, int]] = {
    "observation": (np.float32, 1, 2), "action": (np.float32, 0, 2), "terminal": (np.bool_, 0, 1),
    "physics": (np.float64, 1, 2), "pixels": (np.uint8, 1, 4), "reward": (np.float32, 0, 1),
    "intrinsic_reward": (np.float32, 0, 1),
}

# keys with one row per step (T rows) rather than per state (T+1 rows)
STEP_KEYS = frozenset(k for k, (_, extra, _) in _SPEC.items() if extra == 0)


class EpisodeFormatError(ValueError):
    """A readable episode file whose content does not follow the format."""


def _checked(arrays: Mapping[str, np.ndarray], where: str) -> dict[str, np.ndarray]:
    """Validate one episode's arrays against the format; return them with the stored dtypes."""
    missing = [k for k in REQUIRED_KEYS if k not in arrays]
    if missing:
        raise EpisodeFormatError(
            f"{where}: missing key(s) {missing}; an episode needs {list(REQUIRED_KEYS)}"
            f" (optional: {list(OPTIONAL_KEYS)}), found {sorted(arrays)}")
    out: dict[str, np.ndarray] = {}
    steps = int(np.shape(arrays["action"])[0]) if np.ndim(arrays["action"]) >= 1 else -1
    if steps < 1:
        raise EpisodeFormatError(f"{where}: 'action' must be [T, act_dim] with T >= 1, got shape "
                                 f"{np.shape(arrays['action'])}")
    for key, value in arrays.items():
        if key not in _SPEC:
            continue  # extra keys are allowed (and dropped)
        dtype, extra, ndim = _SPEC[key]
        value = np.asarray(value)
        if value.ndim != ndim:
            raise EpisodeFormatError(f"{where}: '{key}' must have {ndim} dimensions, got shape {value.shape}")
        rows = steps + extra
        if value.shape[0] != rows:
            relation = "T+1" if extra else "T"
            raise EpisodeFormatError(
                f"{where}: '{key}' has {value.shape[0]} rows, expected {rows} ({relation}, with T = {steps} "
                f"actions); 'observation' and 'physics' hold the state before every step and after the last")
        if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            row = int(np.nonzero(~np.isfinite(value).reshape(rows, -1).all(axis=1))[0][0])
            raise EpisodeFormatError(f"{where}: '{key}' has a non-finite value at row {row}")
        out[key] = value.astype(dtype, copy=False)
    out.setdefault("terminal", np.zeros(steps, dtype=np.bool_))
    return out


def write_episode(path: str, **arrays: np.ndarray) -> None:
    """Write one episode (keys of the format, see the module docstring) to ``path`` (``.npz``, ``.h5`` or
    ``.hdf5``), checked first and written atomically (a temporary file renamed), so an interrupted collection
    never leaves a half-written episode behind."""
    if not path.endswith(EPISODE_SUFFIXES):
        raise ValueError(f"episode file '{path}' must end with one of {EPISODE_SUFFIXES}")
    checked = _checked(arrays, path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    suffix = os.path.splitext(path)[1]
    tmp = f"{path}.tmp{os.getpid()}{suffix}"
    if suffix == ".npz":
        np.savez_compressed(tmp, **checked)
    else:
        h5py = _h5py()
        with h5py.File(tmp, "w") as f:
            for key, value in checked.items():
                f.create_dataset(key, data=value, compression="gzip" if value.dtype == np.uint8 else None)
    os.replace(tmp, path)


def read_episode(path: str) -> dict[str, np.ndarray]:
    """Read and validate one episode file. I/O errors (missing, truncated, not an archive) raise
    ``OSError``/``ValueError``; content that breaks the format raises :class:`EpisodeFormatError`."""
    if path.endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
        except (zipfile.BadZipFile, EOFError, zlib.error) as err:
            raise OSError(f"cannot read episode file '{path}': {err}") from err
    elif path.endswith((".h5", ".hdf5")):
        h5py = _h5py()
        with h5py.File(path, "r") as f:
            arrays = {k: f[k][()] for k in f.keys()}
    else:
        raise ValueError(f"episode file '{path}' must end with one of {EPISODE_SUFFIXES}")
    return _checked(arrays, path)


def _h5py() -> Any:
    try:
        import h5py
    except ImportError as err:  # pragma: no cover - part of the `rl` extra
        raise ImportError("HDF5 episodes need h5py: pip install 'jepa-lightning[rl]'") from err
    return h5py


def list_episodes(folder: str) -> list[str]:
    """Sorted episode files of ``folder`` (searched recursively); a clear error when there are none."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"offline RL data folder '{folder}' does not exist")
    files = sorted(
        os.path.join(root, name) for root, _, names in os.walk(folder) for name in names
        if name.endswith(EPISODE_SUFFIXES) and ".tmp" not in name)
    if not files:
        raise FileNotFoundError(f"no episode files ({', '.join(EPISODE_SUFFIXES)}) in '{folder}'")
    return files


def write_metadata(folder: str, **metadata: Any) -> None:
    """``dataset.json`` of a folder of episodes (domain, policy, seed, ...), merged with what is there."""
    path = os.path.join(folder, METADATA_FILE)
    os.makedirs(folder, exist_ok=True)
    merged = read_metadata(folder) | metadata
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(merged, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def read_metadata(folder: str) -> dict[str, Any]:
    path = os.path.join(folder, METADATA_FILE)
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)
