"""UI screen recordings for user-intent understanding (UI-JEPA): a reader for the "Intent in the Wild" (IIW) /
"Intent in the Tame" (IIT) layout and an embedded generator of synthetic phone screen recordings in that layout.

Layout (one folder per split, the videos next to the split's ``annotations.csv``)::

    root/train/annotations.csv        video,intent,category[,...]   (column names are options)
    root/train/<video files>          .mp4 / .mov / ...; relative paths resolve against the split folder
    root/few_shot/annotations.csv
    root/zero_shot/annotations.csv

Splits as in the paper: ``train``; ``few_shot``: recordings of intent categories that ``train`` holds only a few
examples of; ``zero_shot``: recordings of held-out categories that ``train`` does not hold at all.

Batches (dicts; unreadable files are skipped and reported, see :mod:`datamodules.common`):

- ``"video"``: ``[B, C, T, H, W]``, T = ``num_frames`` frames sampled uniformly over the WHOLE recording
  (frame ``round(i * (n - 1) / (T - 1))`` of an n-frame video, first and last included), each frame resized to
  ``image_size`` (no crop, no flip: UI-JEPA found both hurt, a crop can cut away the tapped widget); float32
  normalized with ``mean``/``std`` like :class:`~datamodules.video.VideoDataModule`, or uint8 with
  ``normalize=False``;
- ``"intent"``: list of strings; ``"category"``: int64 index into :attr:`UIRecordingsDataModule.category_names`
  (sorted names over all splits, so zero-shot categories have indices too); ``"path"``: list of file paths.

Recordings shorter than ``num_frames`` are dropped at setup with a report (count and names).

The generator (:func:`generate_ui_recordings`) draws phone screens frame by frame with PIL: a status bar, a home
screen with an app grid of labelled icons, list screens (scrollable, with toggles or delete buttons), search and
text fields with a keyboard, buttons, chat bubbles, a map, a camera viewfinder, a photo grid. A recording is a
scripted sequence of screens and actions consistent with its intent: taps drawn as touch indicators, typing key by
key (the pressed key lights up, the character appears), scrolling (the content moves under a dragging finger),
navigation (the next screen slides in). Two sets: ``"iit"`` (10 categories, lexicalised intents such as
"send a message to Maria") and ``"iiw"`` (24 categories, delexicalised intents such as "send a message to a
contact").
"""

from __future__ import annotations

import csv
import functools
import os
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import torch
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn
from torchvision import tv_tensors
from torchvision.transforms import v2

from .common import JEPADataModule, SkipUnreadable, embedded_root, generate_once
from .video import IMAGENET_MEAN, IMAGENET_STD, ScaleNormalize, _av, read_frames, video_frame_count, write_mp4

SPLITS = ("train", "few_shot", "zero_shot")
_UI_VERSION = 1

# ============================================================================================ vocabulary
_APP_COLORS = {
    "Messages": (52, 199, 89), "Phone": (48, 176, 80), "Settings": (142, 142, 147), "Clock": (30, 30, 30),
    "Notes": (255, 204, 0), "Mail": (0, 122, 255), "Camera": (90, 90, 100), "Photos": (255, 149, 0),
    "Weather": (90, 200, 250), "Calendar": (255, 59, 48), "News": (200, 40, 60), "Contacts": (120, 120, 130),
    "Maps": (100, 180, 120), "Shopzy": (255, 120, 40), "Market": (150, 80, 200), "Tunes": (250, 45, 85),
    "Beats": (40, 40, 160), "Files": (30, 140, 230),
}
APPS = tuple(_APP_COLORS)
VOCAB: dict[str, tuple[str, ...]] = {
    "app": APPS,
    "shop": ("Shopzy", "Market"),
    "music": ("Tunes", "Beats"),
    "item": ("headphones", "running shoes", "coffee beans", "desk lamp", "yoga mat", "phone case", "backpack",
             "water bottle"),
    "setting": ("wi-fi", "bluetooth", "dark mode", "airplane mode", "location", "do not disturb", "battery saver",
                "hotspot"),
    "contact": ("Alice", "Bob", "Maria", "Chen", "Priya", "Omar", "Lena", "Sam"),
    "song": ("blue sky", "night drive", "golden hour", "rainfall", "old town", "paper moon"),
    "place": ("central station", "the airport", "city library", "main street cafe", "the museum"),
    "city": ("paris", "tokyo", "lima", "oslo", "cairo", "denver"),
    "time": ("6:30", "7:00", "7:45", "8:15", "9:20", "5:50"),
    "note": ("buy milk", "call mom", "pay rent", "gym at 6", "water plants"),
    "message": ("on my way", "see you soon", "running late", "call me", "thanks"),
    "mode": ("portrait", "night", "square", "wide"),
    "album": ("holidays", "family", "pets", "food", "screenshots"),
    "topic": ("sports", "science", "politics", "travel", "movies"),
    "event": ("dentist", "team lunch", "birthday party", "yoga class"),
    "day": ("monday", "tuesday", "friday", "saturday"),
}


# ================================================================================================ screens
@dataclass(frozen=True)
class Screen:
    """What one phone screen shows (hashable: rendered once per distinct value)."""

    kind: str = "app"  # home | app | map | camera | grid
    title: str = ""
    color: tuple[int, int, int] = (0, 122, 255)
    rows: tuple[str, ...] = ()
    toggles: tuple[bool | None, ...] = ()  # per row: a toggle switch (on/off) or nothing
    deletable: bool = False  # a red delete button at the end of each row
    scroll: int = 0  # pixels the rows are scrolled up by
    pressed_row: int = -1
    field: str | None = None  # a text field under the header (None: no field)
    keyboard: bool = False
    pressed_key: str = ""
    button: str = ""  # a wide button at the bottom
    badge: int = -1  # cart count in the header (-1: no cart icon)
    bubbles: tuple[str, ...] = ()  # chat messages (odd: received, even: sent)
    big: str = ""  # large centred text (caller, temperature, product, song)
    progress: float = -1.0  # a progress bar (player)
    fab: bool = False  # a round "+" button
    route: float = -1.0  # map: fraction of the route drawn (-1: no route)
    flash: bool = False  # camera: white flash
    apps: tuple[str, ...] = ()  # home: icon order
    wallpaper: tuple[int, int, int] = (40, 60, 90)
    clock: str = "9:41"


_KEY_ROWS = ("1234567890", "qwertyuiop", "asdfghjkl", "zxcvbnm")


@functools.lru_cache(maxsize=16)
def _font(size: int) -> Any:
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


class ScreenPainter:
    """Draws :class:`Screen` values at ``width`` x ``height`` pixels (PIL) and knows where their widgets are (the
    touch positions of the scripts). Renders are cached per distinct screen."""

    def __init__(self, width: int, height: int) -> None:
        self.w, self.h = width, height
        self.status = max(6, height // 14)
        self.header = max(8, height // 8)
        self.row_h = max(7, height // 10)
        self.key_h = max(4, height // 20)
        self.keyboard_h = self.key_h * 5
        self.field_h = max(6, height // 12)
        self.button_h = max(7, height // 10)
        self.icon = max(4, width // 6)
        self._cache: dict[Screen, np.ndarray] = {}
        yy, xx = np.mgrid[:height, :width]
        self._grid = (xx.astype(np.float32), yy.astype(np.float32))

    # ------------------------------------------------------------------------------------------- layout
    def content_top(self, s: Screen) -> int:
        return self.status + self.header + (self.field_h if s.field is not None else 0)

    def content_bottom(self, s: Screen) -> int:
        return self.h - (self.keyboard_h if s.keyboard else 0) - (self.button_h if s.button else 0)

    def icon_xy(self, s: Screen, app: str) -> tuple[int, int]:
        i = s.apps.index(app)
        cw, ch = self.w / 4, self.icon * 1.9
        return int(cw * (i % 4 + 0.5)), int(self.status + 4 + ch * (i // 4) + self.icon / 2)

    def row_xy(self, s: Screen, i: int) -> tuple[int, int]:
        return self.w // 2, self.content_top(s) + i * self.row_h - s.scroll + self.row_h // 2

    def end_xy(self, s: Screen, i: int) -> tuple[int, int]:
        """The toggle / delete button of row ``i``."""
        return self.w - 8, self.row_xy(s, i)[1]

    def field_xy(self) -> tuple[int, int]:
        return self.w // 2, self.status + self.header + self.field_h // 2

    def button_xy(self, s: Screen) -> tuple[int, int]:
        return self.w // 2, self.content_bottom(s) + self.button_h // 2

    def fab_xy(self, s: Screen) -> tuple[int, int]:
        r = self.icon // 2 + 1
        return self.w - r - 3, self.content_bottom(s) - r - 3

    def cart_xy(self) -> tuple[int, int]:
        return self.w - 7, self.status + self.header // 2

    def key_xy(self, ch: str) -> tuple[int, int] | None:
        top = self.h - self.keyboard_h
        if ch in (" ", "\n"):
            x = self.w * (0.45 if ch == " " else 0.88)
            return int(x), int(top + 4.5 * self.key_h)
        for r, keys in enumerate(_KEY_ROWS):
            if ch in keys:
                kw = self.w / 10
                x0 = (self.w - kw * len(keys)) / 2
                return int(x0 + kw * (keys.index(ch) + 0.5)), int(top + (r + 0.5) * self.key_h)
        return None

    # ------------------------------------------------------------------------------------------ drawing
    def render(self, s: Screen) -> np.ndarray:
        """uint8 ``[height, width, 3]``."""
        out = self._cache.get(s)
        if out is None:
            out = self._cache[s] = self._draw(s)
        return out

    def _draw(self, s: Screen) -> np.ndarray:
        from PIL import Image, ImageDraw

        w, h = self.w, self.h
        bg = s.wallpaper if s.kind == "home" else (245, 245, 247)
        img = Image.new("RGB", (w, h), bg)
        d = ImageDraw.Draw(img)
        small, tiny = _font(max(5, self.row_h * 6 // 11)), _font(max(4, self.status - 2))
        if s.kind == "home":
            for app in s.apps:
                cx, cy = self.icon_xy(s, app)
                r = self.icon // 2
                d.rounded_rectangle([cx - r, cy - r, cx + r, cy + r], radius=max(1, r // 2), fill=_APP_COLORS[app])
                d.text((cx, cy), app[0], font=small, fill=(255, 255, 255), anchor="mm")
                d.text((cx, cy + r + 1), app[:6], font=tiny, fill=(235, 235, 235), anchor="mt")
        elif s.kind == "map":
            d.rectangle([0, 0, w, h], fill=(232, 228, 214))
            for k in range(0, w + h, 14):  # streets
                d.line([(k, 0), (k - h // 2, h)], fill=(255, 255, 255), width=2)
                d.line([(0, k), (w, k - w // 3)], fill=(255, 255, 255), width=2)
            start, pin = (w // 4, h - 12), (w * 3 // 4, self.status + self.header + 12)
            if s.route >= 0:
                mid = (start[0], pin[1] + (start[1] - pin[1]) // 3)
                pts = [start, mid, pin]
                t = min(max(s.route, 0.0), 1.0) * 2
                drawn = [pts[0], pts[1]] if t >= 1 else [pts[0], _lerp(pts[0], pts[1], t)]
                if t > 1:
                    drawn.append(_lerp(pts[1], pts[2], t - 1))
                d.line(drawn, fill=(0, 122, 255), width=3)
                d.ellipse([start[0] - 3, start[1] - 3, start[0] + 3, start[1] + 3], fill=(0, 122, 255))
            d.ellipse([pin[0] - 3, pin[1] - 6, pin[0] + 3, pin[1]], fill=(230, 40, 40))
        elif s.kind == "camera":
            d.rectangle([0, 0, w, h], fill=(255, 255, 255) if s.flash else (25, 25, 25))
            if not s.flash:
                rng = np.random.default_rng(len(s.title) * 7 + 3)
                for _ in range(6):
                    x, y = rng.integers(0, w), rng.integers(self.status, h - 24)
                    d.ellipse([x - 8, y - 6, x + 8, y + 6], fill=tuple(int(c) for c in rng.integers(40, 200, 3)))
            r = self.icon // 2 + 2
            d.ellipse([w // 2 - r, h - 2 * r - 4, w // 2 + r, h - 4], fill=(240, 240, 240), outline=(120, 120, 120))
            d.text((w // 2, h - 2 * r - 8), s.title, font=tiny, fill=(255, 204, 0), anchor="mb")
            if s.badge >= 0:  # thumbnail of the last photo
                d.rectangle([4, h - 2 * r - 2, 4 + 2 * r - 2, h - 6], fill=(160, 120, 80))
        else:
            top, bottom = self.content_top(s), self.content_bottom(s)
            if s.kind == "grid":
                cell = w // 3
                for i in range(3 * ((bottom - top) // cell + 2)):
                    x, y = (i % 3) * cell, top + (i // 3) * cell - s.scroll
                    hue = (i * 53 + len(s.title) * 31) % 255
                    d.rectangle([x + 1, y + 1, x + cell - 1, y + cell - 1], fill=(hue, 255 - hue, (hue * 3) % 255))
            for i, text in enumerate(s.rows):
                y = top + i * self.row_h - s.scroll
                if y + self.row_h < top or y > bottom:
                    continue
                if i == s.pressed_row:
                    d.rectangle([0, y, w, y + self.row_h - 1], fill=(210, 210, 215))
                d.rectangle([3, y + 2, 3 + self.row_h - 5, y + self.row_h - 3], fill=_shade(s.color, i))
                d.text((self.row_h + 1, y + self.row_h // 2), text, font=small, fill=(20, 20, 20), anchor="lm")
                d.line([(self.row_h, y + self.row_h - 1), (w, y + self.row_h - 1)], fill=(215, 215, 220))
                ex, ey = self.end_xy(s, i)
                state = s.toggles[i] if i < len(s.toggles) else None
                if state is not None:
                    d.rectangle([ex - 6, ey - 5, w, ey + 5], fill=bg)
                    d.rounded_rectangle([ex - 5, ey - 3, ex + 5, ey + 3], radius=3,
                                        fill=(52, 199, 89) if state else (200, 200, 205))
                    kx = ex + 2 if state else ex - 2
                    d.ellipse([kx - 3, ey - 3, kx + 3, ey + 3], fill=(255, 255, 255), outline=(170, 170, 170))
                if s.deletable:
                    d.ellipse([ex - 4, ey - 4, ex + 4, ey + 4], fill=(255, 59, 48))
                    d.line([(ex - 2, ey), (ex + 2, ey)], fill=(255, 255, 255), width=1)
            for i, text in enumerate(s.bubbles):
                y = bottom - (len(s.bubbles) - i) * (self.row_h + 2)
                sent = i % 2 == 1
                x0, x1 = (w // 3, w - 2) if sent else (2, w * 2 // 3)
                d.rounded_rectangle([x0, y, x1, y + self.row_h], radius=3,
                                    fill=(0, 122, 255) if sent else (229, 229, 234))
                d.text((x0 + 2, y + self.row_h // 2), text, font=small, anchor="lm",
                       fill=(255, 255, 255) if sent else (20, 20, 20))
            if s.big:
                cy = top + (bottom - top) // 3 if not s.rows else top + len(s.rows) * self.row_h + 8
                d.text((w // 2, cy), s.big, font=_font(max(7, self.row_h)), fill=(20, 20, 20), anchor="mm")
            if s.progress >= 0:
                y = bottom - self.row_h
                d.rectangle([6, y, w - 6, y + 2], fill=(200, 200, 205))
                d.rectangle([6, y, 6 + int((w - 12) * min(s.progress, 1.0)), y + 2], fill=s.color)
            if s.fab:
                cx, cy = self.fab_xy(s)
                r = self.icon // 2 + 1
                d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=s.color)
                d.text((cx, cy), "+", font=small, fill=(255, 255, 255), anchor="mm")
            if s.button:
                y = bottom
                d.rounded_rectangle([4, y + 1, w - 4, y + self.button_h - 2], radius=3, fill=s.color)
                d.text((w // 2, y + self.button_h // 2), s.button, font=small, fill=(255, 255, 255), anchor="mm")
            # header (over scrolled rows) and text field
            d.rectangle([0, self.status, w, self.status + self.header], fill=s.color)
            d.text((3, self.status + self.header // 2), s.title, font=small, fill=(255, 255, 255), anchor="lm")
            if s.badge >= 0:
                cx, cy = self.cart_xy()
                d.rectangle([cx - 4, cy - 2, cx + 3, cy + 3], outline=(255, 255, 255))
                if s.badge > 0:
                    d.ellipse([cx + 1, cy - 6, cx + 6, cy - 1], fill=(255, 59, 48))
                    d.text((cx + 3, cy - 3), str(s.badge), font=tiny, fill=(255, 255, 255), anchor="mm")
            if s.field is not None:
                y = self.status + self.header
                d.rectangle([0, y, w, y + self.field_h], fill=(235, 235, 240))
                d.rounded_rectangle([2, y + 1, w - 3, y + self.field_h - 1], radius=2, fill=(255, 255, 255),
                                    outline=(190, 190, 195))
                d.text((4, y + self.field_h // 2), s.field + ("|" if s.keyboard else ""), font=small,
                       fill=(20, 20, 20), anchor="lm")
            if s.keyboard:
                self._keyboard(d, s.pressed_key, tiny)
        # status bar
        d.rectangle([0, 0, w, self.status - 1], fill=(15, 15, 15) if s.kind != "home" else s.wallpaper)
        d.text((2, self.status // 2), s.clock, font=tiny, fill=(255, 255, 255), anchor="lm")
        d.rectangle([w - 9, 2, w - 3, self.status - 3], outline=(255, 255, 255))
        d.rectangle([w - 8, 3, w - 5, self.status - 4], fill=(255, 255, 255))
        return np.asarray(img)

    def _keyboard(self, d: Any, pressed: str, font: Any) -> None:
        top = self.h - self.keyboard_h
        d.rectangle([0, top, self.w, self.h], fill=(208, 211, 217))
        kw, kh = self.w / 10, self.key_h
        for r, keys in enumerate(_KEY_ROWS):
            x0 = (self.w - kw * len(keys)) / 2
            for k, ch in enumerate(keys):
                x, y = x0 + kw * k, top + r * kh
                d.rectangle([int(x) + 1, int(y) + 1, int(x + kw) - 1, int(y + kh) - 1],
                            fill=(120, 120, 130) if ch == pressed else (255, 255, 255))
        y = top + 4 * kh
        d.rectangle([int(self.w * 0.2), int(y) + 1, int(self.w * 0.7), int(y + kh) - 1],
                    fill=(120, 120, 130) if pressed == " " else (255, 255, 255))
        d.rectangle([int(self.w * 0.76), int(y) + 1, self.w - 1, int(y + kh) - 1],
                    fill=(120, 120, 130) if pressed == "\n" else (0, 122, 255))

    def touch(self, frame: np.ndarray, xy: tuple[float, float] | None) -> np.ndarray:
        """The frame with a touch indicator (a translucent white disc with a grey ring) at ``xy``."""
        if xy is None:
            return frame
        xx, yy = self._grid
        dist = np.hypot(xx - xy[0], yy - xy[1])
        r = max(2.5, self.w / 18)
        disc = (dist <= r)[..., None]
        ring = ((dist > r) & (dist <= r + 1.2))[..., None]
        out = np.where(disc, frame * 0.4 + 150, frame)
        return np.where(ring, 90, out).astype(np.uint8)


def _lerp(a: tuple[int, int], b: tuple[int, int], t: float) -> tuple[int, int]:
    return int(a[0] + (b[0] - a[0]) * t), int(a[1] + (b[1] - a[1]) * t)


def _shade(color: tuple[int, int, int], i: int) -> tuple[int, int, int]:
    f = 0.55 + 0.45 * ((i * 37) % 10) / 10
    return tuple(int(c * f + 255 * (1 - f) * 0.5) for c in color)  # type: ignore[return-value]


# ============================================================================================ recordings
class Recording:
    """A scripted screen recording: a list of segments, each a function of time t in [0, 1] giving a screen
    (and where the finger is), with a weight and a minimum number of frames. :meth:`frames` shares a total
    length out over the segments (at least their minimum each, the rest in proportion to their weights)."""

    def __init__(self, painter: ScreenPainter, home: Screen) -> None:
        self.p, self.home = painter, home
        self.segments: list[tuple[Callable[[float], np.ndarray], Callable[[float], Any], float, int]] = []

    def _add(self, render: Callable[[float], np.ndarray], touch: Callable[[float], Any], weight: float,
             least: int) -> None:
        self.segments.append((render, touch, weight, least))

    def _r(self, s: Screen) -> np.ndarray:
        return self.p.render(replace(s, clock=self.home.clock))

    def hold(self, s: Screen, weight: float = 1.0, least: int = 1) -> None:
        self._add(lambda t: self._r(s), lambda t: None, weight, least)

    def animate(self, make: Callable[[float], Screen], weight: float = 2.0, least: int = 2) -> None:
        self._add(lambda t: self._r(make(t)), lambda t: None, weight, least)

    def tap(self, s: Screen, xy: tuple[int, int] | None, pressed: Screen | None = None, weight: float = 0.6,
            least: int = 2) -> None:
        """The finger on ``xy`` (``least`` frames at least), the widget shown pressed."""
        shown = pressed or s
        self._add(lambda t: self._r(shown), lambda t: xy, weight, least)

    def slide(self, a: Screen, b: Screen, weight: float = 0.8) -> None:
        """Navigation: ``b`` slides in from the right over ``a``."""
        def render(t: float) -> np.ndarray:
            fa, fb = self._r(a), self._r(b)
            off = int(round(t * self.p.w))
            return np.concatenate([fa[:, off:], fb[:, :off]], axis=1) if 0 < off < self.p.w else (fa if off <= 0 else fb)
        self._add(render, lambda t: None, weight, 2)

    def scroll(self, s: Screen, to: int, weight: float = 1.5) -> Screen:
        """Drag the rows of ``s`` up by ``to - s.scroll`` pixels; returns the scrolled screen."""
        start, y0 = s.scroll, (self.p.content_top(s) + self.p.content_bottom(s)) // 2 + 10
        x = self.p.w // 3
        self._add(lambda t: self._r(replace(s, scroll=int(round(start + (to - start) * t)))),
                  lambda t: (x, y0 - (to - start) * t), weight, 3)
        return replace(s, scroll=to)

    def type(self, make: Callable[[str, str], Screen], text: str, prefix: str = "") -> None:
        """Type ``text`` key by key: each key pressed (finger on it, key lit), then its character appears."""
        for k, ch in enumerate(text):
            before = prefix + text[:k]
            self.tap(make(before, ""), self.p.key_xy(ch), make(before, ch), weight=0.35, least=1)
        self.hold(make(prefix + text, ""), 0.3)

    def open_app(self, app: str, first: Screen) -> None:
        self.hold(self.home, 1.2)
        self.tap(self.home, self.p.icon_xy(self.home, app))
        self.slide(self.home, first)

    @property
    def minimum(self) -> int:
        """The fewest frames the recording can have."""
        return sum(s[3] for s in self.segments)

    def frames(self, length: int) -> np.ndarray:
        """uint8 ``[T, H, W, 3]``, T = max(length, sum of the segments' minimum lengths)."""
        least = np.array([s[3] for s in self.segments])
        weight = np.array([s[2] for s in self.segments], dtype=np.float64)
        extra = max(length - int(least.sum()), 0)
        share = weight / weight.sum() * extra
        counts = least + np.floor(share).astype(int)
        rest = extra - int(np.floor(share).sum())
        counts[np.argsort(-(share - np.floor(share)), kind="stable")[:rest]] += 1
        out = []
        for (render, touch, _, _), n in zip(self.segments, counts):
            for k in range(n):
                t = k / max(n - 1, 1)
                out.append(self.p.touch(render(t), touch(t)))
        return np.stack(out)


# =============================================================================================== scripts
# Each script plays one intent category: ``script(rec, slots, rng)`` with the slots of its template filled.
Script = Callable[[Recording, dict[str, str], np.random.Generator], None]


def _pick(rng: np.random.Generator, pool: Sequence[str], k: int, must: str | None = None) -> list[str]:
    others = [x for x in pool if x != must]
    chosen = [str(x) for x in rng.choice(others, size=min(k, len(others)), replace=False)]
    if must is not None:
        chosen.insert(int(rng.integers(0, len(chosen) + 1)), must)
    return chosen


def _app(app: str, **kw: Any) -> Screen:
    return Screen(**{"title": app, "color": _APP_COLORS[app], **kw})


def _search(rec: Recording, app: str, query: str, results: Sequence[str], landing: Sequence[str]) -> Screen:
    """Open ``app``, tap its search field, type ``query``, press enter; ends on the result list."""
    s0 = _app(app, rows=tuple(landing), field="")
    rec.open_app(app, s0)
    rec.tap(s0, rec.p.field_xy())
    rec.type(lambda text, key: replace(s0, field=text, keyboard=True, pressed_key=key), query)
    typed = replace(s0, field=query, keyboard=True)
    rec.tap(typed, rec.p.key_xy("\n"), replace(typed, pressed_key="\n"))
    res = replace(s0, field=query, rows=tuple(results))
    rec.hold(res, 0.8)
    return res


def _tap_row(rec: Recording, s: Screen, i: int) -> None:
    rec.tap(s, rec.p.row_xy(s, i), replace(s, pressed_row=i))


def _visible(rec: Recording, s: Screen, i: int) -> Screen:
    """Scroll ``s`` so that row ``i`` is in view (a drag when it is below the fold)."""
    rows_in_view = (rec.p.content_bottom(s) - rec.p.content_top(s)) // rec.p.row_h
    if i < rows_in_view - 1:
        return s
    return rec.scroll(s, (i - rows_in_view + 2) * rec.p.row_h)


def _results(query: str, suffixes: Sequence[str]) -> list[str]:
    return [query] + [f"{query} {x}" for x in suffixes]


def s_open_app(rec, slots, rng):
    app = slots["app"]
    landing = _app(app, rows=tuple(_pick(rng, VOCAB["item"] + VOCAB["note"], 7)), fab=bool(rng.integers(2)))
    rec.open_app(app, landing)
    rec.hold(landing, 2.0)


def s_search_shop(rec, slots, rng):
    res = _search(rec, slots["shop"], slots["item"], _results(slots["item"], ("pro", "mini", "set", "xl")),
                  _pick(rng, VOCAB["item"], 6))
    rec.scroll(res, rec.p.row_h * 2)


def s_search_music(rec, slots, rng):
    _search(rec, slots["music"], slots["song"], _results(slots["song"], ("live", "remix", "acoustic")),
            _pick(rng, VOCAB["song"], 5))


def s_search_maps(rec, slots, rng):
    _search(rec, "Maps", slots["place"], _results(slots["place"], ("north", "east")), ())
    rec.slide(_app("Maps", field=slots["place"], rows=(slots["place"],)), Screen(kind="map", title="Maps"))
    rec.hold(Screen(kind="map", title="Maps"), 1.0)


def _toggle(rec, slots, rng, on):
    names = _pick(rng, VOCAB["setting"], 7, must=slots["setting"])
    i = names.index(slots["setting"])
    states = [bool(x) for x in rng.integers(0, 2, len(names))]
    states[i] = not on
    s = _app("Settings", rows=tuple(names), toggles=tuple(states))
    rec.open_app("Settings", s)
    s = _visible(rec, s, i)
    rec.tap(s, rec.p.end_xy(s, i))
    states[i] = on
    rec.hold(replace(s, toggles=tuple(states)), 1.5)


def s_turn_on(rec, slots, rng):
    _toggle(rec, slots, rng, True)


def s_turn_off(rec, slots, rng):
    _toggle(rec, slots, rng, False)


def s_send_message(rec, slots, rng):
    contact, message = slots["contact"], str(rng.choice(VOCAB["message"]))
    names = _pick(rng, VOCAB["contact"], 6, must=contact)
    i = names.index(contact)
    inbox = _app("Messages", rows=tuple(names))
    rec.open_app("Messages", inbox)
    _tap_row(rec, inbox, i)
    chat = _app("Messages", title=contact, field="", bubbles=(str(rng.choice(VOCAB["message"])),))
    rec.slide(inbox, chat)
    rec.tap(chat, rec.p.field_xy())
    rec.type(lambda text, key: replace(chat, field=text, keyboard=True, pressed_key=key), message)
    typed = replace(chat, field=message, keyboard=True)
    rec.tap(typed, rec.p.key_xy("\n"), replace(typed, pressed_key="\n"))
    rec.hold(replace(chat, bubbles=chat.bubbles + (message,)), 1.2)


def s_add_to_cart(rec, slots, rng):
    shop, item = slots["shop"], slots["item"]
    res = _search(rec, shop, item, _results(item, ("pro", "mini")), _pick(rng, VOCAB["item"], 5))
    _tap_row(rec, res, 0)
    page = _app(shop, big=item, rows=(f"${int(rng.integers(5, 90))}.99",), button="Add to cart", badge=0)
    rec.slide(res, page)
    rec.tap(page, rec.p.button_xy(page))
    rec.hold(replace(page, badge=1, button="In cart"), 1.2)


def s_remove_from_cart(rec, slots, rng):
    shop, item = slots["shop"], slots["item"]
    items = _pick(rng, VOCAB["item"], 2, must=item)
    home = _app(shop, rows=tuple(_pick(rng, VOCAB["item"], 6)), badge=len(items))
    rec.open_app(shop, home)
    rec.tap(home, rec.p.cart_xy())
    cart = _app(shop, title="Cart", rows=tuple(items), deletable=True, badge=len(items), button="Checkout")
    rec.slide(home, cart)
    i = items.index(item)
    rec.tap(cart, rec.p.end_xy(cart, i))
    rec.hold(replace(cart, rows=tuple(x for x in items if x != item), badge=len(items) - 1), 1.2)


def s_call(rec, slots, rng):
    contact = slots["contact"]
    names = _pick(rng, VOCAB["contact"], 7, must=contact)
    i = names.index(contact)
    book = _app("Phone", rows=tuple(names))
    rec.open_app("Phone", book)
    book = _visible(rec, book, i)
    _tap_row(rec, book, i)
    call = Screen(title="Calling", color=(48, 176, 80), big=contact, button="End")
    rec.slide(book, call)
    rec.animate(lambda t: replace(call, rows=(f"0:0{int(t * 5)}",)), 1.5)


def s_play_song(rec, slots, rng):
    music, song = slots["music"], slots["song"]
    res = _search(rec, music, song, _results(song, ("live", "remix")), _pick(rng, VOCAB["song"], 4))
    _tap_row(rec, res, 0)
    player = _app(music, big=song, progress=0.0)
    rec.slide(res, player)
    rec.animate(lambda t: replace(player, progress=0.3 * t), 2.0)


def _new_item(rec, app, existing, text, button, toggles=False):
    """List screen with a "+" button -> editor: type ``text`` -> ``button`` -> the list with the new row first."""
    lst = _app(app, rows=tuple(existing), fab=True, toggles=tuple(True for _ in existing) if toggles else ())
    rec.open_app(app, lst)
    rec.tap(lst, rec.p.fab_xy(lst))
    editor = _app(app, title="New", field="", keyboard=True, button=button)
    rec.slide(lst, editor)
    rec.type(lambda t, key: replace(editor, field=t, pressed_key=key), text)
    done = replace(editor, field=text)
    rec.tap(done, rec.p.button_xy(done))
    rows = (text, *existing)
    rec.hold(replace(lst, rows=rows, toggles=tuple(True for _ in rows) if toggles else ()), 1.2)


def s_set_alarm(rec, slots, rng):
    others = [x for x in _pick(rng, VOCAB["time"], 3) if x != slots["time"]]
    _new_item(rec, "Clock", others, slots["time"], "Save", toggles=True)


def s_create_note(rec, slots, rng):
    _new_item(rec, "Notes", [x for x in _pick(rng, VOCAB["note"], 3) if x != slots["note"]], slots["note"], "Done")


def _delete_row(rec, app, rows, target):
    lst = _app(app, rows=tuple(rows), deletable=True)
    rec.open_app(app, lst)
    i = rows.index(target)
    rec.tap(lst, rec.p.end_xy(lst, i))
    rec.hold(replace(lst, rows=tuple(r for r in rows if r != target)), 1.2)


def s_delete_alarm(rec, slots, rng):
    _delete_row(rec, "Clock", _pick(rng, VOCAB["time"], 3, must=slots["time"]), slots["time"])


def s_delete_note(rec, slots, rng):
    _delete_row(rec, "Notes", _pick(rng, VOCAB["note"], 3, must=slots["note"]), slots["note"])


def s_directions(rec, slots, rng):
    res = _search(rec, "Maps", slots["place"], _results(slots["place"], ("entrance",)), ())
    _tap_row(rec, res, 0)
    m = Screen(kind="map", title="Maps", route=0.0)
    rec.slide(res, m)
    rec.animate(lambda t: replace(m, route=t), 2.0)


def s_weather(rec, slots, rng):
    city = slots["city"]
    res = _search(rec, "Weather", city, (city, f"{city} airport"), _pick(rng, VOCAB["city"], 3))
    _tap_row(rec, res, 0)
    card = _app("Weather", title=city, big=f"{int(rng.integers(-5, 35))}C", rows=("mon", "tue", "wed"))
    rec.slide(res, card)
    rec.hold(card, 1.5)


def s_read_email(rec, slots, rng):
    contact = slots["contact"]
    senders = _pick(rng, VOCAB["contact"], 7, must=contact)
    i = senders.index(contact)
    inbox = _app("Mail", rows=tuple(f"{s}: {rng.choice(VOCAB['topic'])}" for s in senders), fab=True)
    rec.open_app("Mail", inbox)
    inbox = _visible(rec, inbox, i)
    _tap_row(rec, inbox, i)
    mail = _app("Mail", title=contact, rows=tuple(_pick(rng, VOCAB["message"], 4)))
    rec.slide(inbox, mail)
    rec.hold(mail, 1.5)


def s_compose_email(rec, slots, rng):
    contact = slots["contact"].lower()
    inbox = _app("Mail", rows=tuple(_pick(rng, VOCAB["contact"], 5)), fab=True)
    rec.open_app("Mail", inbox)
    rec.tap(inbox, rec.p.fab_xy(inbox))
    draft = _app("Mail", title="To:", field="", keyboard=True, button="Send")
    rec.slide(inbox, draft)
    rec.type(lambda t, key: replace(draft, field=t, pressed_key=key), contact)
    done = replace(draft, field=contact)
    rec.tap(done, rec.p.button_xy(done))
    rec.hold(inbox, 0.8)


def s_add_contact(rec, slots, rng):
    _new_item(rec, "Contacts", [x for x in _pick(rng, VOCAB["contact"], 4) if x != slots["contact"]],
              slots["contact"].lower(), "Save")


def s_take_photo(rec, slots, rng):
    cam = Screen(kind="camera", title="photo")
    rec.open_app("Camera", cam)
    moded = replace(cam, title=slots["mode"])
    rec.tap(cam, (rec.p.w // 2, rec.p.h - rec.p.icon - 12), moded)
    shutter = (rec.p.w // 2, rec.p.h - rec.p.icon // 2 - 6)
    rec.tap(moded, shutter)
    rec.hold(replace(moded, flash=True), 0.3)
    rec.hold(replace(moded, badge=1), 1.2)


def s_view_photo(rec, slots, rng):
    albums = _pick(rng, VOCAB["album"], 4, must=slots["album"])
    lst = _app("Photos", rows=tuple(albums))
    rec.open_app("Photos", lst)
    _tap_row(rec, lst, albums.index(slots["album"]))
    grid = _app("Photos", kind="grid", title=slots["album"])
    rec.slide(lst, grid)
    grid = rec.scroll(grid, rec.p.w // 3)
    rec.tap(grid, (rec.p.w // 2, rec.p.content_top(grid) + rec.p.w // 6))
    rec.hold(Screen(kind="camera", title=slots["album"], flash=False), 1.2)


def s_browse_news(rec, slots, rng):
    topic = slots["topic"]
    heads = _pick(rng, VOCAB["topic"] + VOCAB["city"], 9, must=topic)
    lst = _app("News", rows=tuple(heads))
    rec.open_app("News", lst)
    lst = rec.scroll(lst, rec.p.row_h * 3, 2.0)
    i = heads.index(topic)
    lst = _visible(rec, replace(lst, scroll=0), i) if i >= 3 else lst
    _tap_row(rec, lst, i)
    rec.slide(lst, _app("News", title=topic, rows=tuple(_pick(rng, VOCAB["message"], 5))))
    rec.hold(_app("News", title=topic, rows=tuple(_pick(rng, VOCAB["message"], 5))), 1.0)


def s_add_event(rec, slots, rng):
    days = list(VOCAB["day"])
    cal = _app("Calendar", rows=tuple(days))
    rec.open_app("Calendar", cal)
    _tap_row(rec, cal, days.index(slots["day"]))
    day = _app("Calendar", title=slots["day"], rows=(), fab=True)
    rec.slide(cal, day)
    rec.tap(day, rec.p.fab_xy(day))
    editor = _app("Calendar", title="New event", field="", keyboard=True, button="Add")
    rec.slide(day, editor)
    rec.type(lambda t, key: replace(editor, field=t, pressed_key=key), slots["event"])
    done = replace(editor, field=slots["event"])
    rec.tap(done, rec.p.button_xy(done))
    rec.hold(replace(day, rows=(slots["event"],)), 1.0)


@dataclass(frozen=True)
class IntentCategory:
    """An intent category: a lexicalised template (slots in braces, filled from :data:`VOCAB`), the
    delexicalised intent of the IIW-like set, and the script that plays it."""

    name: str
    template: str
    delexicalised: str
    script: Script

    @property
    def slots(self) -> list[str]:
        return [f for _, f, _, _ in string.Formatter().parse(self.template) if f]


CATEGORIES: dict[str, IntentCategory] = {c.name: c for c in (
    IntentCategory("open_app", "open {app}", "open an app", s_open_app),
    IntentCategory("search_shopping", "search for {item} in {shop}", "search for an item in a shopping app",
                   s_search_shop),
    IntentCategory("search_music", "search for {song} in {music}", "search for a song in a music app",
                   s_search_music),
    IntentCategory("search_maps", "search for {place} in maps", "search for a place in a maps app", s_search_maps),
    IntentCategory("turn_on_setting", "turn on {setting}", "turn on a setting", s_turn_on),
    IntentCategory("turn_off_setting", "turn off {setting}", "turn off a setting", s_turn_off),
    IntentCategory("send_message", "send a message to {contact}", "send a message to a contact", s_send_message),
    IntentCategory("add_to_cart", "add {item} to the cart in {shop}", "add an item to the shopping cart",
                   s_add_to_cart),
    IntentCategory("remove_from_cart", "remove {item} from the cart in {shop}",
                   "remove an item from the shopping cart", s_remove_from_cart),
    IntentCategory("call_contact", "call {contact}", "call a contact", s_call),
    IntentCategory("play_song", "play {song} in {music}", "play a song in a music app", s_play_song),
    IntentCategory("set_alarm", "set an alarm for {time}", "set an alarm", s_set_alarm),
    IntentCategory("delete_alarm", "delete the {time} alarm", "delete an alarm", s_delete_alarm),
    IntentCategory("create_note", "create a note saying {note}", "create a note", s_create_note),
    IntentCategory("delete_note", "delete the note {note}", "delete a note", s_delete_note),
    IntentCategory("get_directions", "get directions to {place}", "get directions to a place", s_directions),
    IntentCategory("check_weather", "check the weather in {city}", "check the weather in a city", s_weather),
    IntentCategory("read_email", "read the email from {contact}", "read an email from a contact", s_read_email),
    IntentCategory("compose_email", "write an email to {contact}", "write an email to a contact", s_compose_email),
    IntentCategory("add_contact", "add {contact} to contacts", "add a new contact", s_add_contact),
    IntentCategory("take_photo", "take a photo in {mode} mode", "take a photo", s_take_photo),
    IntentCategory("view_photo", "open a photo from the {album} album", "open a photo from an album", s_view_photo),
    IntentCategory("read_news", "read the news about {topic}", "read a news article", s_browse_news),
    IntentCategory("add_event", "add {event} to the calendar on {day}", "add an event to the calendar", s_add_event),
)}
UI_SETS: dict[str, tuple[str, ...]] = {
    "iit": ("open_app", "search_shopping", "turn_on_setting", "turn_off_setting", "send_message", "add_to_cart",
            "call_contact", "play_song", "set_alarm", "create_note"),
    "iiw": tuple(CATEGORIES),
}
SET_DEFAULTS = {"iit": {"zero_shot_categories": 2, "few_shot_categories": 2},
                "iiw": {"zero_shot_categories": 6, "few_shot_categories": 6}}


def record_intent(category: str, lexicalised: bool, rng: np.random.Generator, length: int | tuple[int, int],
                  width: int = 64, height: int = 112, painter: ScreenPainter | None = None) -> tuple[np.ndarray, str]:
    """One recording of ``category``: uint8 frames ``[T, height, width, 3]`` and its intent (lexicalised: the
    template with the slots the recording shows; else the category's delexicalised intent).

    ``length``: T, or a range (lo, hi) T is drawn from uniformly, raised to the script's minimum (a frame per
    typed character, two per tap, ...; at most 33 frames for the scripts here) where that is more than lo."""
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
    minimum where needed (see :func:`record_intent`). IIT-like (``ui_set="iit"``) intents are lexicalised, IIW-like
    ones delexicalised.
    """
    roles = split_categories(ui_set, zero_shot_categories, few_shot_categories, gen_seed)
    plan = {
        "train": [(c, train_per_category) for c in roles["common"]] + [(c, few_shot_train) for c in roles["few_shot"]],
        "few_shot": [(c, eval_per_category) for c in roles["few_shot"]],
        "zero_shot": [(c, eval_per_category) for c in roles["zero_shot"]],
    }
    painter = ScreenPainter(width, height)
    options = {"crf": "18", "preset": "veryfast", "threads": "1"}
    counts = {}
    for s, split in enumerate(SPLITS):
        os.makedirs(os.path.join(folder, split))
        rng = np.random.default_rng([gen_seed, s, 7])
        jobs = [c for c, n in plan[split] for _ in range(n)]
        jobs = [jobs[i] for i in rng.permutation(len(jobs))]
        rows = []
        for i, category in enumerate(jobs):
            frames, intent = record_intent(category, ui_set == "iit", rng, (min_frames, max_frames), painter=painter)
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


# ================================================================================================ reader
def read_ui_annotations(csv_path: str, video_column: str = "video", intent_column: str = "intent",
                        category_column: str = "category") -> list[tuple[str, str, str]]:
    """``(video path, intent, category name)`` per row of a split's ``annotations.csv``; relative video paths
    resolve against the csv's folder. A missing column is an error naming the csv, the option, the column and
    the columns present."""
    if not os.path.isfile(csv_path):
        raise FileNotFoundError(f"annotations file '{csv_path}' does not exist; expected <root>/<split>/"
                                f"annotations.csv with columns for the video file, the intent and the category")
    base = os.path.dirname(os.path.abspath(csv_path))
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or []]
        reader.fieldnames = columns
        for option, col in (("video_column", video_column), ("intent_column", intent_column),
                            ("category_column", category_column)):
            if col not in columns:
                raise ValueError(f"{csv_path}: no column '{col}' ({option}={col!r}); its columns are {columns}")
        out = []
        for row in reader:
            video = (row.get(video_column) or "").strip()
            if not video:
                if not any((v or "").strip() for v in row.values()):
                    continue
                raise ValueError(f"{csv_path}:{reader.line_num}: empty '{video_column}'")
            path = os.path.expanduser(video)
            out.append((path if os.path.isabs(path) else os.path.normpath(os.path.join(base, path)),
                        (row.get(intent_column) or "").strip(), (row.get(category_column) or "").strip()))
    return out


def uniform_indices(num_video_frames: int, num_frames: int) -> list[int]:
    """``num_frames`` indices spread uniformly over the whole video, first and last frame included."""
    if num_frames == 1:
        return [(num_video_frames - 1) // 2]
    return [round(i * (num_video_frames - 1) / (num_frames - 1)) for i in range(num_frames)]


class UIRecordingDataset(SkipUnreadable):
    """``(path, intent, category index, frame count or None)`` samples -> ``{"video", "intent", "category",
    "path"}``: ``num_frames`` frames uniformly over the whole video, resized to ``image_size`` (no crop/flip),
    normalized (or uint8). Unreadable files are skipped (:class:`~datamodules.common.SkipUnreadable`)."""

    def __init__(self, samples: Sequence[tuple[str, str, int, int | None]], num_frames: int,
                 image_size: tuple[int, int], mean: Sequence[float], std: Sequence[float], normalize: bool = True,
                 decode_threads: int = 1) -> None:
        self.unreadable_errors = (*SkipUnreadable.unreadable_errors, _av().error.FFmpegError)
        self.samples = list(samples)
        self.num_frames, self.decode_threads, self.normalize = num_frames, decode_threads, normalize
        self.resize = v2.Resize(list(image_size), antialias=True)
        self.norm = ScaleNormalize(mean, std)

    def __len__(self) -> int:
        return len(self.samples)

    def sample_path(self, index: int) -> str:
        return self.samples[index][0]

    def read(self, index: int) -> torch.Tensor:
        path, _, _, count = self.samples[index]
        if count is None:
            count = video_frame_count(path, self.decode_threads)
        if count < self.num_frames:
            raise ValueError(f"{path}: {count} frames, fewer than num_frames={self.num_frames}")
        return read_frames(path, uniform_indices(count, self.num_frames), seek=True,
                           decode_threads=self.decode_threads)  # [C, T, H, W]

    def prepare(self, raw: torch.Tensor, index: int) -> dict[str, Any]:
        path, intent, category, _ = self.samples[index]
        x = self.resize(tv_tensors.Video(raw.permute(1, 0, 2, 3))).as_subclass(torch.Tensor)  # [T, C, h, w]
        x = self.norm(x) if self.normalize else x.contiguous()
        return {"video": x.permute(1, 0, 2, 3), "intent": intent, "category": category, "path": path}


# ============================================================================================ datamodule
class UIRecordingsDataModule(JEPADataModule):
    """UI screen recordings with intents, in the IIW / IIT release layout (see the module docstring).

    ``root``: a release folder (``<root>/<split>/annotations.csv``); ``None`` uses the embedded synthetic set
    ``synthetic`` ("iit": 10 categories, lexicalised intents; "iiw": 24 categories, delexicalised), generated
    once (``prepare_data``, or lazily in ``setup``) into ``cache_dir/<set>/<hash of the generation
    parameters>/`` (``cache_dir`` defaults to ``$JEPA_LIGHTNING_CACHE/ui_recordings``, else
    ``~/.cache/jepa_lightning/ui_recordings``) with an atomic rename, and read back through the same reader.

    ``video_column`` / ``intent_column`` / ``category_column``: the csv columns (the release does not document
    them). ``train_split`` / ``few_shot_split`` / ``zero_shot_split``: the split folder names. ``val_split`` and
    ``test_split`` pick which of few-shot and zero-shot serve as validation and test (predict uses the test
    split). ``num_frames`` frames uniformly over each whole recording (16 as in UI-JEPA); shorter recordings are
    dropped at setup and reported (``dropped_short``). No crop or flip (UI-JEPA found they hurt): frames are
    resized to ``image_size`` (H, W). ``normalize=False`` yields uint8 videos.

    Synthetic generation sizes: ``train_per_category`` (common categories), ``few_shot_train`` (train
    recordings of each few-shot category), ``eval_per_category`` (few-shot and zero-shot splits),
    ``zero_shot_categories`` / ``few_shot_categories`` (None: 2/2 for iit, 6/6 for iiw), ``min_frames`` /
    ``max_frames``, ``width`` x ``height`` pixels (portrait), ``fps``, ``gen_seed``.
    """

    def __init__(
        self,
        root: str | None = None,
        synthetic: Literal["iit", "iiw"] = "iit",
        cache_dir: str | None = None,
        video_column: str = "video",
        intent_column: str = "intent",
        category_column: str = "category",
        train_split: str = "train",
        few_shot_split: str = "few_shot",
        zero_shot_split: str = "zero_shot",
        val_split: Literal["few_shot", "zero_shot"] = "few_shot",
        test_split: Literal["few_shot", "zero_shot"] = "zero_shot",
        num_frames: int = 16,
        image_size: tuple[int, int] = (64, 64),
        normalize: bool = True,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        decode_threads: int = 1,
        train_per_category: int = 16,
        few_shot_train: int = 2,
        eval_per_category: int = 8,
        zero_shot_categories: int | None = None,
        few_shot_categories: int | None = None,
        min_frames: int = 32,
        max_frames: int = 64,
        width: int = 64,
        height: int = 112,
        fps: int = 8,
        gen_seed: int = 0,
        batch_size: int = 16,
        num_workers: int = 0,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        drop_last: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, pin_memory=pin_memory,
                         persistent_workers=persistent_workers, drop_last=drop_last, seed=seed)
        self.save_hyperparameters()
        _av()
        if synthetic not in UI_SETS:
            raise ValueError(f"synthetic must be one of {tuple(UI_SETS)}, got {synthetic!r}")
        for name, value in (("val_split", val_split), ("test_split", test_split)):
            if value not in ("few_shot", "zero_shot"):
                raise ValueError(f"{name} must be 'few_shot' or 'zero_shot', got {value!r}")
        for name, value, least in (("num_frames", num_frames, 1), ("train_per_category", train_per_category, 1),
                                   ("few_shot_train", few_shot_train, 0), ("eval_per_category", eval_per_category, 1),
                                   ("min_frames", min_frames, 2), ("fps", fps, 1), ("decode_threads", decode_threads, 0)):
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
        if max_frames < min_frames:
            raise ValueError(f"max_frames={max_frames} must be >= min_frames={min_frames}")
        if len(image_size) != 2 or min(image_size) < 1:
            raise ValueError(f"image_size must be (height, width) >= 1, got {tuple(image_size)}")
        for name, value in (("width", width), ("height", height)):
            if not isinstance(value, int) or value < 32 or value % 2:
                raise ValueError(f"{name} must be an even number of pixels >= 32 (h264 yuv420p), got {value!r}")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean and std must have 3 values (R, G, B), std > 0; got {tuple(mean)}, {tuple(std)}")
        n_cat = len(UI_SETS[synthetic])
        defaults = SET_DEFAULTS[synthetic]
        zero = defaults["zero_shot_categories"] if zero_shot_categories is None else zero_shot_categories
        few = defaults["few_shot_categories"] if few_shot_categories is None else few_shot_categories
        if root is None and (zero < 1 or few < 1 or zero + few >= n_cat):
            raise ValueError(f"zero_shot_categories={zero} and few_shot_categories={few} must be >= 1 and leave"
                             f" at least one common category of the {n_cat} of synthetic={synthetic!r}")
        self.split_dirs = {"train": train_split, "few_shot": few_shot_split, "zero_shot": zero_shot_split}
        self.columns = {"video_column": video_column, "intent_column": intent_column,
                        "category_column": category_column}
        self.val_split, self.test_split = val_split, test_split
        self.num_frames, self.image_size, self.normalize = num_frames, tuple(image_size), normalize
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.decode_threads = decode_threads
        self.synthetic = synthetic if root is None else None
        self.generation = {"ui_set": synthetic, "train_per_category": train_per_category,
                           "few_shot_train": few_shot_train, "eval_per_category": eval_per_category,
                           "zero_shot_categories": zero, "few_shot_categories": few, "min_frames": min_frames,
                           "max_frames": max_frames, "width": width, "height": height, "fps": fps,
                           "gen_seed": gen_seed}
        if root is None:
            self.cache_dir: str | None
            self.cache_dir, self.root = embedded_root(cache_dir and os.path.join(cache_dir, synthetic),
                                                      os.path.join("ui_recordings", synthetic),
                                                      {**self.generation, "version": _UI_VERSION})
        else:
            self.cache_dir = None
            self.root = os.path.abspath(os.path.expanduser(os.fspath(root)))
            if not os.path.isdir(self.root):
                raise FileNotFoundError(f"root '{self.root}' does not exist; expected a folder with split folders"
                                        f" {list(self.split_dirs.values())}, each holding an annotations.csv")
        self.index: dict[str, list[tuple[str, str, str]]] | None = None
        self._categories: list[str] | None = None
        self.dropped_short: dict[str, list[str]] = {}
        self.generation_seconds: float | None = None

    # ------------------------------------------------------------------------------------- generation
    @property
    def generated(self) -> bool:
        return self.synthetic is None or os.path.isfile(os.path.join(self.root, "params.json"))

    def prepare_data(self) -> None:
        """Generates the synthetic set unless it is cached (atomic; safe with concurrent processes)."""
        if self.generated:
            return
        done = generate_once(self.root, {**self.generation, "version": _UI_VERSION},
                             lambda folder: generate_ui_recordings(folder, **self.generation))
        if done is not None:
            counts, self.generation_seconds = done
            rank_zero_info(f"UIRecordingsDataModule: wrote {sum(counts.values())} {self.synthetic} recordings"
                           f" {counts} to {self.root} in {self.generation_seconds:.1f}s")

    # ----------------------------------------------------------------------------------------- index
    def _csv(self, split: str) -> str:
        return os.path.join(self.root, self.split_dirs[split], "annotations.csv")

    def _read_index(self) -> None:
        if not self.generated:
            self.prepare_data()
        needed = {"train", self.val_split, self.test_split}
        index = {}
        for split in SPLITS:
            path = self._csv(split)
            if split in needed or os.path.isfile(path):
                index[split] = read_ui_annotations(path, **self.columns)
        names = sorted({c for rows in index.values() for _, _, c in rows})
        if not names or any(not c for rows in index.values() for _, _, c in rows):
            empty = [p for rows in index.values() for p, _, c in rows if not c][:3]
            raise ValueError(f"empty '{self.columns['category_column']}' for {empty} under '{self.root}'"
                             if empty else f"no recordings listed under '{self.root}'")
        self.index, self._categories = index, names

    @property
    def category_names(self) -> list[str]:
        """Sorted category names over all splits; a batch's ``category`` indexes this list."""
        if self._categories is None:
            self._read_index()
        assert self._categories is not None
        return list(self._categories)

    @property
    def num_classes(self) -> int:
        return len(self.category_names)

    def categories_of(self, split: str) -> list[str]:
        """Sorted category names present in ``split`` (train, few_shot, zero_shot)."""
        if self.index is None:
            self._read_index()
        assert self.index is not None
        return sorted({c for _, _, c in self.index.get(split, [])})

    def intents_of(self, split: str) -> list[str]:
        """The intent texts listed for ``split`` (train, few_shot, zero_shot), in annotation order (e.g. the
        corpus an intent decoder trains its tokenizer on)."""
        if self.index is None:
            self._read_index()
        assert self.index is not None
        return [intent for _, intent, _ in self.index.get(split, [])]

    def _samples(self, split: str) -> list[tuple[str, str, int, int | None]]:
        """The split's samples with their frame counts; those shorter than ``num_frames`` dropped and reported.
        A file whose count cannot be read stays in, to be skipped and reported when it is loaded."""
        assert self.index is not None and self._categories is not None
        lookup = {c: i for i, c in enumerate(self._categories)}
        keep, short = [], []
        errors = (OSError, ValueError, EOFError, _av().error.FFmpegError)
        for path, intent, category in self.index[split]:
            try:
                count: int | None = video_frame_count(path, self.decode_threads)
            except errors:
                count = None
            if count is not None and count < self.num_frames:
                short.append(f"{os.path.basename(path)} ({count} frames)")
                continue
            keep.append((path, intent, lookup[category], count))
        self.dropped_short[split] = short
        if short:
            listed = ", ".join(short[:10]) + (f" and {len(short) - 10} more" if len(short) > 10 else "")
            rank_zero_warn(f"UIRecordingsDataModule: dropped {len(short)} {split} recording(s) shorter than"
                           f" num_frames={self.num_frames}: {listed}")
        if not keep:
            raise ValueError(f"no {split} recording under '{os.path.dirname(self._csv(split))}' has"
                             f" num_frames={self.num_frames} frames or more")
        return keep

    def _dataset(self, split: str) -> UIRecordingDataset:
        return UIRecordingDataset(self._samples(split), self.num_frames, self.image_size, self.mean, self.std,
                                  self.normalize, self.decode_threads)

    def setup(self, stage: str | None = None) -> None:
        if self.index is None:
            self._read_index()
        if stage in (None, "fit") and self.train_dataset is None:
            self.train_dataset = self.train_eval_dataset = self._dataset("train")
        if stage in (None, "fit", "validate") and self.val_dataset is None:
            self.val_dataset = self._dataset(self.val_split)
        if stage in (None, "test", "predict") and self.test_dataset is None:
            self.test_dataset = self.predict_dataset = self._dataset(self.test_split)
