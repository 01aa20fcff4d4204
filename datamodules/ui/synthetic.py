"""The embedded generator of synthetic phone screen recordings in the IIW / IIT layout
(:func:`generate_ui_recordings`): scripted recordings (:mod:`~datamodules.ui.scripts`) of phone screens
(:mod:`~datamodules.ui.screens`) written as h264 mp4 files. Three sets: ``"iit"`` (10 categories, lexicalised
intents such as "send a message to Maria"), ``"iiw"`` (24 categories, delexicalised intents such as "send a
message to a contact") and ``"interact"`` (12 categories on one app skin, lexicalised intents such as "turn on
bluetooth"; the intent lies in which element is touched and how the screen changes, colour carries nothing: see
:mod:`~datamodules.ui.interact`).
"""

from __future__ import annotations

import csv
import os

import numpy as np

from ..video.codec import write_mp4
from .interact import INTERACT_CATEGORIES, InteractPainter, record_interact
from .reader import SPLITS
from .recording import Recording
from .screens import APPS, Screen, ScreenPainter
from .scripts import CATEGORIES, VOCAB

_UI_VERSION = 1  # bump when the generated recordings change: the cache folder is keyed by it

UI_SETS: dict[str, tuple[str, ...]] = {
    "iit": ("open_app", "search_shopping", "turn_on_setting", "turn_off_setting", "send_message", "add_to_cart",
            "call_contact", "play_song", "set_alarm", "create_note"),
    "iiw": tuple(CATEGORIES),
    "interact": tuple(INTERACT_CATEGORIES),
}
SET_DEFAULTS = {"iit": {"zero_shot_categories": 2, "few_shot_categories": 2},
                "iiw": {"zero_shot_categories": 6, "few_shot_categories": 6},
                "interact": {"zero_shot_categories": 2, "few_shot_categories": 2, "width": 48, "height": 96}}
# interact is drawn at the UI-JEPA recipe's frame size (image_size [96, 48]): no resampling, exact colour balance


def record_intent(category: str, lexicalised: bool, rng: np.random.Generator, length: int | tuple[int, int],
                  width: int = 64, height: int = 112, painter: ScreenPainter | InteractPainter | None = None
                  ) -> tuple[np.ndarray, str]:
    """One recording of ``category``: uint8 frames ``[T, height, width, 3]`` and its intent (lexicalised: the
    template with the slots the recording shows; else the category's delexicalised intent).

    ``length``: T, or a range (lo, hi) T is drawn from uniformly, raised to the script's minimum (a frame per
    typed character, two per tap, ...; at most 33 frames for the scripts here) where that is more than lo.
    Categories of the interact set (:data:`~datamodules.ui.interact.INTERACT_CATEGORIES`) are played by
    :func:`~datamodules.ui.interact.record_interact` (always lexicalised; T raised to 24 for every category)."""
    if category in INTERACT_CATEGORIES:
        ip = painter if isinstance(painter, InteractPainter) else InteractPainter(width, height)
        return record_interact(category, rng, length, ip)
    if isinstance(painter, InteractPainter):
        raise TypeError(f"category {category!r} needs a ScreenPainter, got {type(painter).__name__}")
    cat = CATEGORIES[category]
    slots = {k: str(rng.choice(VOCAB[k])) for k in cat.slots}
    painter = painter or ScreenPainter(width, height)
    apps = tuple(str(a) for a in rng.permutation(APPS))
    wallpaper = tuple(int(c) for c in rng.integers(20, 120, 3))
    clock = f"{int(rng.integers(7, 13))}:{int(rng.integers(0, 60)):02d}"
    rec = Recording(painter, Screen(kind="home", apps=apps, wallpaper=wallpaper, clock=clock))  # type: ignore[arg-type]
    cat.script(rec, slots, rng)
    intent = cat.template.format(**slots) if lexicalised else cat.delexicalised
    if not isinstance(length, int):
        least = rec.minimum
        length = int(rng.integers(max(length[0], least), max(length[1], least) + 1))
    return rec.frames(length), intent


def split_categories(ui_set: str, zero_shot_categories: int, few_shot_categories: int,
                     gen_seed: int) -> dict[str, list[str]]:
    """Categories by role: ``zero_shot`` (held out of train), ``few_shot`` (a few train examples each) and
    ``common`` (the rest), drawn by ``gen_seed``."""
    names = list(UI_SETS[ui_set])
    order = [names[i] for i in np.random.default_rng([gen_seed, 99]).permutation(len(names))]
    z, f = zero_shot_categories, few_shot_categories
    return {"zero_shot": sorted(order[:z]), "few_shot": sorted(order[z:z + f]), "common": sorted(order[z + f:])}


def generate_ui_recordings(folder: str, ui_set: str = "iit", train_per_category: int = 8, few_shot_train: int = 2,
                           eval_per_category: int = 4, zero_shot_categories: int = 2, few_shot_categories: int = 2,
                           min_frames: int = 32, max_frames: int = 64, width: int = 64, height: int = 112,
                           fps: int = 8, gen_seed: int = 0) -> dict[str, int]:
    """Writes ``<split>/annotations.csv`` (columns ``video,intent,category,frames``) and ``<split>/*.mp4`` for
    the splits train, few_shot, zero_shot into ``folder`` (created); returns the number of videos per split.

    train: ``train_per_category`` recordings of each common category, ``few_shot_train`` of each few-shot one;
    few_shot: ``eval_per_category`` new recordings of each few-shot category; zero_shot: ``eval_per_category``
    of each held-out category. Lengths are drawn uniformly in [min_frames, max_frames], raised to the script's
    minimum where needed (see :func:`record_intent`). IIT-like (``ui_set="iit"``) and interact intents are
    lexicalised, IIW-like ones delexicalised.
    """
    roles = split_categories(ui_set, zero_shot_categories, few_shot_categories, gen_seed)
    plan = {
        "train": [(c, train_per_category) for c in roles["common"]] + [(c, few_shot_train) for c in roles["few_shot"]],
        "few_shot": [(c, eval_per_category) for c in roles["few_shot"]],
        "zero_shot": [(c, eval_per_category) for c in roles["zero_shot"]],
    }
    painter = InteractPainter(width, height) if ui_set == "interact" else ScreenPainter(width, height)
    # interact: lossless luma (its flat screens compress as well as at crf 18), so the codec keeps the colour balance
    options = {"crf": "0" if ui_set == "interact" else "18", "preset": "veryfast", "threads": "1"}
    counts = {}
    for s, split in enumerate(SPLITS):
        os.makedirs(os.path.join(folder, split))
        rng = np.random.default_rng([gen_seed, s, 7])
        jobs = [c for c, n in plan[split] for _ in range(n)]
        jobs = [jobs[i] for i in rng.permutation(len(jobs))]
        rows = []
        for i, category in enumerate(jobs):
            frames, intent = record_intent(category, ui_set != "iiw", rng, (min_frames, max_frames), painter=painter)
            name = f"{ui_set}_{split}_{i:05d}.mp4"
            write_mp4(os.path.join(folder, split, name), frames, fps, options)
            rows.append((name, intent, category, len(frames)))
        painter._cache.clear()
        with open(os.path.join(folder, split, "annotations.csv"), "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(("video", "intent", "category", "frames"))
            writer.writerows(rows)
        counts[split] = len(rows)
    return counts
