"""The ``"interact"`` synthetic set: one app skin serves every intent, and the intent lies in WHICH large element
is touched and HOW the screen changes, not in any colour.

Design (laid out in 64 x 112 design units and drawn at any portrait size; the datamodule draws this set at 48 x 96,
the UI-JEPA recipe's frame size, so no resampling blurs it; every element is sized to stay legible there):

- one skin for all categories: the same header (colour and contents), the same palette (ink, control grey, paper
  white) on a light background whose grey level is a per-recording nuisance, the same dark-blue wallpaper family,
  the same home screen (Settings, Contacts and two decoy apps as big tiles, a clock widget);
- 12 categories in two groups. Settings: a screen of 4 big toggle rows (wi-fi, bluetooth, airplane mode,
  location), each a glyph tile (fan, bow-tie, plane, pin), a label bar and a big toggle; ``turn_on_<row>`` /
  ``turn_off_<row>`` for the first 3 rows. A toggle's state is the knob's side (left off, right on) on a track
  of one colour, so flipping it changes no colour count; the toggled row starts in the opposite state, the other
  rows' states are random, so neither the first nor the last frame alone says which row changed or how; while
  pressed the knob sits in the middle (the tap frame shows which row, not which way). Contacts: a screen of 4
  rows with big avatar tiles told apart by pattern (horizontal bands, vertical bands, checker, bull's eye; all
  ink on paper); ``call_<contact>`` / ``message_<contact>`` for the first 3 contacts: tap the contact, its page
  (big avatar, a call and a message button) opens, tap a button, then either the call screen (pulsing rings,
  three round buttons and an end-call pill) or the compose screen (a thread, a text field filling up key by key,
  a keyboard) follows. Neither last screen shows the contact: the category needs the page (which contact) AND
  the end (call or message). The 4th row and the 4th contact are never targets;
- every recording starts on the home screen, and half of them first open the OTHER group's app, look and go
  back, so both app screens appear in recordings of every category. The home frames are counted out explicitly
  (a random share of the frames, drawn the same way for every category), so when the app opens does not depend
  on the category; screens change by cuts (no sliding, whose mixed frames could not be balanced, see below);
- colour carries nothing: the bottom strip of every frame (a dock of three segment bars: ink, control, paper)
  tops the number of pixels of each palette colour up to a fixed budget, finger included, so with the same
  nuisance draws every category's recording has frame by frame the same number of pixels of every colour: mean
  colours, colour histograms and their changes over time are all uninformative (exact as drawn; the dock's bars
  only say what the screen above them shows anyway). The mp4 files keep it nearly so: the generator writes this
  set with lossless luma (crf 0);
- the finger is a control-grey disc with a white rim.

Intents are lexicalised ("turn on bluetooth", "call Maria", "send a message to Maria"); category = the name.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .recording import Recording

SETTINGS = ("wi-fi", "bluetooth", "airplane mode", "location")  # the rows of the settings screen, in order
CONTACTS = ("Maria", "Chen", "Omar", "Lena")  # the rows of the contacts screen, in order
TARGETS = 3  # the first 3 rows of each screen are intent targets; the 4th is a distractor

INK, CTRL, PAPER = (32, 32, 32), (152, 152, 152), (255, 255, 255)  # neutral: no chroma for the codec to blur
HEADER, STATUS, STATUS_INK = (0, 100, 200), (18, 18, 18), (235, 235, 235)
PALETTE = (INK, CTRL, PAPER)  # the colours whose pixel counts the dock balances
_GLYPHS = ("fan", "bowtie", "plane", "pin")  # settings rows
_PATTERNS = ("hbands", "vbands", "checker", "bullseye")  # contacts
MIN_FRAMES = 24  # every recording has at least this many frames (more than the longest script's minimum)
# design units: 64 x 112; rows of the list screens; the dock
_ROW0, _ROW_H, _DOCK = 20, 19, 96  # a background gap under the header: codecs bleed its chroma


@dataclass(frozen=True)
class InteractCategory:
    """A category of the interact set: its name, lexicalised intent, action (turn_on | turn_off | call |
    message) and target row (settings row or contact)."""

    name: str
    intent: str
    action: str
    target: int


def _slug(text: str) -> str:
    return text.replace("-", "").replace(" ", "_").lower()


INTERACT_CATEGORIES: dict[str, InteractCategory] = {c.name: c for c in (
    *(InteractCategory(f"turn_{way}_{_slug(s)}", f"turn {way} {s}", f"turn_{way}", i)
      for i, s in enumerate(SETTINGS[:TARGETS]) for way in ("on", "off")),
    *(InteractCategory(f"{act}_{_slug(c)}", text.format(c), act, i) for i, c in enumerate(CONTACTS[:TARGETS])
      for act, text in (("call", "call {}"), ("message", "send a message to {}"))),
)}


@dataclass(frozen=True)
class Panel:
    """What one screen of the interact app shows (hashable: rendered once per distinct value)."""

    kind: str = "home"  # home | settings | contacts | contact | call | compose
    toggles: tuple[int, ...] = (0, 0, 0, 0)  # settings: 0 off, 1 on, 2 pressed (knob in the middle)
    contact: int = 0  # contact page: which contact
    ring: int = 0  # call: phase (0-3) of the ringing rings
    typed: int = 0  # compose: characters typed so far
    pressed_key: int = -1  # compose: the key lit up
    bg: int = 240  # grey level of the app background (a per-recording nuisance)
    wallpaper: tuple[int, int, int] = (30, 50, 100)
    clock: str = "9:41"


@functools.lru_cache(maxsize=4)
def _font(size: int) -> Any:
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


class InteractPainter:
    """Draws :class:`Panel` values at ``width`` x ``height`` pixels (default: the UI-JEPA recipe's frame size),
    knows where their widgets are, and draws the finger and the colour-balancing dock on each frame
    (:meth:`touch`)."""

    def __init__(self, width: int = 48, height: int = 96) -> None:
        self.w, self.h = width, height
        self.sx, self.sy = width / 64, height / 112
        self.dock_top = self._y(_DOCK)
        self._cache: dict[Panel, np.ndarray] = {}
        yy, xx = np.mgrid[:height, :width]
        self._grid = (xx.astype(np.float32), yy.astype(np.float32))
        dy, dx = np.mgrid[self.dock_top:height, :width]
        order = np.lexsort((dy.ravel(), dx.ravel()))  # column by column, top to bottom
        self._dock = (dy.ravel()[order], dx.ravel()[order])
        self.overflow = 0  # palette pixels the dock could not balance so far (0 at 48 x 96, 64 x 112, ...)
        self.targets, worst = self._budget()
        if worst > len(self._dock[0]):
            warnings.warn(f"InteractPainter({width}, {height}): the dock ({len(self._dock[0])} pixels) cannot top"
                          f" up every screen's colours ({worst} needed); mean colours will differ slightly"
                          " between screens (portrait sizes such as 48 x 96 are exact)", stacklevel=2)

    # ------------------------------------------------------------------------------------------- layout
    def _x(self, v: float) -> int:
        return int(round(v * self.sx))

    def _y(self, v: float) -> int:
        return int(round(v * self.sy))

    def _xy(self, x: float, y: float) -> tuple[int, int]:
        return self._x(x), self._y(y)

    def icon_xy(self, app: str) -> tuple[int, int]:
        """The home screen tile of ``app`` (settings, contacts, clock, notes)."""
        i = ("settings", "contacts", "clock", "notes").index(app)
        return self._xy(18.5 + 27 * (i % 2), 51.5 + 30 * (i // 2))

    def toggle_xy(self, row: int) -> tuple[int, int]:
        return self._xy(51, _ROW0 + _ROW_H * row + 9.5)

    def row_xy(self, row: int) -> tuple[int, int]:
        return self._xy(32, _ROW0 + _ROW_H * row + 9.5)

    def button_xy(self, action: str) -> tuple[int, int]:
        """The contact page's call (left) or message (right) button."""
        return self._xy(17 if action == "call" else 46, 83)

    def key_xy(self, key: int) -> tuple[int, int]:
        return self._xy(8 + 8 * (key % 7), 67 + 8 * (key // 7))

    def toggle_box(self, row: int) -> tuple[int, int, int, int]:
        """Pixel box ``(x0, y0, x1, y1)`` (exclusive ends) of row ``row``'s toggle track."""
        y0 = _ROW0 + _ROW_H * row
        return self._x(40), self._y(y0 + 3), self._x(62), self._y(y0 + 16)

    # ------------------------------------------------------------------------------------------ drawing
    def render(self, s: Panel) -> np.ndarray:
        """uint8 ``[height, width, 3]`` (without finger and dock bars: see :meth:`touch`)."""
        out = self._cache.get(s)
        if out is None:
            if len(self._cache) > 512:
                self._cache.clear()
            out = self._cache[s] = self._draw(s)
        return out

    def _box(self, x0: float, y0: float, x1: float, y1: float) -> list[int]:
        return [self._x(x0), self._y(y0), self._x(x1), self._y(y1)]

    def _draw(self, s: Panel) -> np.ndarray:
        from PIL import Image, ImageDraw

        bg = (s.bg, s.bg, s.bg)
        img = Image.new("RGB", (self.w, self.h), s.wallpaper if s.kind == "home" else bg)
        d = ImageDraw.Draw(img)
        if s.kind == "home":
            d.rounded_rectangle(self._box(4, 11, 59, 29), radius=self._x(4), fill=CTRL)  # a clock widget
            self._glyph(d, "clock", 14, 20, 15, INK)
            d.rectangle(self._box(27, 15, 54, 17), fill=PAPER)
            d.rectangle(self._box(27, 22, 47, 24), fill=PAPER)
            for app, glyph in (("settings", "gear"), ("contacts", "person"), ("clock", "clock"), ("notes", "notes")):
                cx, cy = self.icon_xy(app)
                d.rounded_rectangle([cx - self._x(9), cy - self._y(9), cx + self._x(9), cy + self._y(9)],
                                    radius=self._x(3), fill=PAPER)
                self._glyph(d, glyph, cx / self.sx, cy / self.sy, 15, INK)
        else:
            d.rectangle(self._box(0, 7, 64, 18), fill=HEADER)
            d.polygon([self._xy(9, 8.5), self._xy(4, 12.5), self._xy(9, 16.5)], fill=PAPER)  # the same on all
            d.rectangle(self._box(14, 11, 36, 14), fill=PAPER)
            getattr(self, f"_{s.kind}")(d, s)
        d.rectangle(self._box(0, _DOCK, 64, 112), fill=bg)
        d.rectangle([0, 0, self.w, self._y(7) - 1], fill=STATUS)
        d.text((2, self._y(3.5)), s.clock, font=_font(max(4, self._y(6))), fill=STATUS_INK, anchor="lm")
        d.rectangle([self.w - self._x(9), 1, self.w - self._x(3), self._y(5)], outline=STATUS_INK)
        return np.asarray(img)

    def _settings(self, d: Any, s: Panel) -> None:
        for i, state in enumerate(s.toggles):
            y = _ROW0 + _ROW_H * i
            d.rounded_rectangle(self._box(3, y + 1, 20, y + 18), radius=self._x(3), fill=PAPER)
            self._glyph(d, _GLYPHS[i], 11.5, y + 9.5, 13, INK)
            d.rectangle(self._box(24, y + 8, 36, y + 11), fill=CTRL)
            x0, y0, x1, y1 = self.toggle_box(i)
            d.rounded_rectangle([x0, y0, x1 - 1, y1 - 1], radius=(y1 - y0) // 2, fill=CTRL)
            kx = (41, 50, 45.5)[state]
            d.ellipse(self._box(kx, y + 4, kx + 10, y + 14), fill=INK)

    def _contacts(self, d: Any, s: Panel) -> None:
        for i in range(len(CONTACTS)):
            y = _ROW0 + _ROW_H * i
            self._avatar(d, i, self._box(3, y + 1, 21, y + 19))
            d.rectangle(self._box(25, y + 4, 48, y + 8), fill=CTRL)
            d.rectangle(self._box(25, y + 11, 42, y + 14), fill=CTRL)
            d.polygon([self._xy(52, y + 4), self._xy(60, y + 9.5), self._xy(52, y + 15)], fill=INK)

    def _contact(self, d: Any, s: Panel) -> None:
        self._avatar(d, s.contact, self._box(14, 25, 50, 61))
        d.rectangle(self._box(18, 65, 46, 68), fill=CTRL)
        for action, glyph in (("call", "handset"), ("message", "bubble")):
            cx, cy = self.button_xy(action)
            r = (self._x(11), self._y(11))
            d.ellipse([cx - r[0], cy - r[1], cx + r[0], cy + r[1]], fill=CTRL)
            self._glyph(d, glyph, cx / self.sx, cy / self.sy, 13, INK)

    def _call(self, d: Any, s: Panel) -> None:
        cx, cy = 32, 42
        for k in (s.ring, 3 - s.ring):  # one ring grows as the other shrinks
            r = 14 + 2.5 * k
            d.ellipse(self._box(cx - r, cy - r, cx + r, cy + r), outline=CTRL, width=max(1, self._x(3)))
        d.ellipse(self._box(cx - 12, cy - 12, cx + 12, cy + 12), fill=PAPER)
        self._glyph(d, "handset", cx, cy, 15, INK)
        d.rectangle(self._box(16, 63, 48, 66), fill=CTRL)
        for x in (14, 32, 50):
            d.ellipse(self._box(x - 7, 68, x + 7, 81), fill=PAPER, outline=CTRL, width=max(1, self._x(1.5)))
            d.ellipse(self._box(x - 2.5, 72, x + 2.5, 77), fill=INK)
        d.rounded_rectangle(self._box(14, 83, 50, 94), radius=self._x(5), fill=INK)
        d.rectangle(self._box(24, 87.5, 40, 89.5), fill=PAPER)

    def _compose(self, d: Any, s: Panel) -> None:
        d.rounded_rectangle(self._box(22, 24, 61, 34), radius=self._x(3), fill=INK)  # the thread: sent, received
        d.rounded_rectangle(self._box(3, 37, 36, 46), radius=self._x(3), fill=PAPER)
        d.rectangle(self._box(3, 50, 61, 60), fill=PAPER)  # the text field
        for k in range(min(s.typed, 4)):
            d.rectangle(self._box(6 + 5 * k, 52.5, 8.5 + 5 * k, 57.5), fill=INK)
        d.ellipse(self._box(53, 51.5, 60, 58.5), fill=INK)
        for k in range(21):
            x, y = 8 + 8 * (k % 7), 67 + 8 * (k // 7)
            d.rectangle(self._box(x - 2, y - 3, x + 2, y + 3), fill=INK if k == s.pressed_key else CTRL)

    def _avatar(self, d: Any, i: int, box: list[int]) -> None:
        """Contact ``i``'s avatar: an ink pattern on a paper tile (pixel box)."""
        x0, y0, x1, y1 = box
        d.rounded_rectangle([x0, y0, x1 - 1, y1 - 1], radius=max(1, (x1 - x0) // 6), fill=PAPER)
        m = max(1, (x1 - x0) // 9)
        x0, y0, x1, y1 = x0 + m, y0 + m, x1 - m, y1 - m
        xm, ym, w, h = (x0 + x1) // 2, (y0 + y1) // 2, x1 - x0, y1 - y0
        kind = _PATTERNS[i]
        if kind == "hbands":
            for k in (0, 2):
                d.rectangle([x0, y0 + k * h // 4, x1 - 1, y0 + (k + 1) * h // 4 - 1], fill=INK)
        elif kind == "vbands":
            for k in (0, 2):
                d.rectangle([x0 + k * w // 4, y0, x0 + (k + 1) * w // 4 - 1, y1 - 1], fill=INK)
        elif kind == "checker":
            d.rectangle([x0, y0, xm - 1, ym - 1], fill=INK)
            d.rectangle([xm, ym, x1 - 1, y1 - 1], fill=INK)
        else:
            d.ellipse([x0, y0, x1 - 1, y1 - 1], fill=INK)
            d.ellipse([x0 + w // 5, y0 + h // 5, x1 - 1 - w // 5, y1 - 1 - h // 5], fill=PAPER)
            d.ellipse([xm - w // 8, ym - h // 8, xm + w // 8, ym + h // 8], fill=INK)

    def _glyph(self, d: Any, kind: str, cx: float, cy: float, size: float, fill: tuple[int, int, int]) -> None:
        """A glyph of ``size`` design units centred on ``(cx, cy)`` (design units)."""
        def p(u: float, v: float) -> tuple[int, int]:
            return self._xy(cx + u * size, cy + v * size)

        def box(u0: float, v0: float, u1: float, v1: float) -> list[int]:
            return [*p(u0, v0), *p(u1, v1)]

        width = max(1, self._x(size / 7))
        if kind == "gear":
            d.ellipse(box(-0.32, -0.32, 0.32, 0.32), outline=fill, width=width)
            for u, v in ((0, -0.45), (0, 0.45), (-0.45, 0), (0.45, 0)):
                d.rectangle(box(u - 0.09, v - 0.09, u + 0.09, v + 0.09), fill=fill)
        elif kind == "person":
            d.ellipse(box(-0.2, -0.45, 0.2, -0.05), fill=fill)
            d.chord(box(-0.42, 0.0, 0.42, 0.85), 180, 360, fill=fill)
        elif kind == "clock":
            d.ellipse(box(-0.45, -0.45, 0.45, 0.45), outline=fill, width=width)
            d.line([p(0, 0), p(0, -0.3)], fill=fill, width=width)
            d.line([p(0, 0), p(0.22, 0)], fill=fill, width=width)
        elif kind == "notes":
            for v in (-0.3, 0.0, 0.3):
                d.rectangle(box(-0.38, v - 0.07, 0.38, v + 0.07), fill=fill)
        elif kind == "fan":
            for r in (0.75, 0.45):
                d.arc(box(-r, 0.35 - r, r, 0.35 + r), 225, 315, fill=fill, width=width)
            d.ellipse(box(-0.1, 0.22, 0.1, 0.42), fill=fill)
        elif kind == "bowtie":
            d.polygon([p(-0.42, -0.38), p(0, 0), p(-0.42, 0.38)], fill=fill)
            d.polygon([p(0.42, -0.38), p(0, 0), p(0.42, 0.38)], fill=fill)
        elif kind == "plane":
            d.rectangle(box(-0.07, -0.45, 0.07, 0.45), fill=fill)
            d.polygon([p(-0.48, 0.08), p(0, -0.18), p(0.48, 0.08), p(0, 0.05)], fill=fill)
            d.rectangle(box(-0.22, 0.3, 0.22, 0.4), fill=fill)
        elif kind == "pin":
            d.ellipse(box(-0.3, -0.48, 0.3, 0.12), fill=fill)
            d.polygon([p(-0.26, -0.05), p(0.26, -0.05), p(0, 0.48)], fill=fill)
        elif kind == "handset":
            d.line([p(-0.28, -0.28), p(0.28, 0.28)], fill=fill, width=max(1, self._x(size / 4)))
            d.ellipse(box(-0.48, -0.48, -0.14, -0.14), fill=fill)
            d.ellipse(box(0.14, 0.14, 0.48, 0.48), fill=fill)
        elif kind == "bubble":
            d.rounded_rectangle(box(-0.45, -0.38, 0.45, 0.22), radius=max(1, self._x(size / 6)), fill=fill)
            d.polygon([p(-0.25, 0.15), p(-0.3, 0.45), p(0.02, 0.15)], fill=fill)
        else:
            raise ValueError(kind)

    # ---------------------------------------------------------------------------- finger and colour dock
    def counts(self, frame: np.ndarray) -> np.ndarray:
        """Pixels of each :data:`PALETTE` colour between the status bar (whose anti-aliased clock is the same in
        every frame of a recording) and the dock."""
        top = frame[self._y(7):self.dock_top]
        return np.array([int(np.all(top == c, axis=-1).sum()) for c in PALETTE])

    def _budget(self) -> tuple[np.ndarray, int]:
        """The pixels of each palette colour every frame is topped up to (the most any screen shows, plus the
        finger's own pixels) and the most pixels the dock has to add to a screen."""
        kinds = [Panel("home"), Panel("contacts"), *(Panel("settings", toggles=(k,) * 4) for k in range(3)),
                 *(Panel("contact", contact=i) for i in range(4)), *(Panel("call", ring=k) for k in range(4)),
                 *(Panel("compose", typed=n, pressed_key=k) for n in (0, 4) for k in range(-1, 21))]
        counts = np.stack([self.counts(self._draw(s)) for s in kinds])
        blank = np.zeros((self.h, self.w, 3), np.uint8)
        finger = np.max([self.counts(self._finger(blank, (self.w / 2 + u / 4, self.h / 2 + v / 4)))
                         for u in range(4) for v in range(4)], axis=0)  # the most it covers at any sub-pixel place
        targets = counts.max(0) + finger
        return targets, int((targets - counts).sum(1).max())

    def _finger(self, frame: np.ndarray, xy: tuple[float, float]) -> np.ndarray:
        xx, yy = self._grid
        dist = np.hypot(xx - xy[0], yy - xy[1])
        r = 6 * min(self.sx, self.sy)
        out = np.where((dist <= r)[..., None], np.array(CTRL, np.uint8), frame)
        return np.where(((dist > r) & (dist <= r + 1.2))[..., None], np.array(PAPER, np.uint8), out)

    def touch(self, frame: np.ndarray, xy: tuple[float, float] | None) -> np.ndarray:
        """The frame with the finger at ``xy`` (None: no finger) and the dock bars that top each palette
        colour up to :attr:`targets`."""
        out = self._finger(frame, xy) if xy is not None else frame.copy()
        need = self.targets - self.counts(out)
        self.overflow += int(np.clip(-need, 0, None).sum()) + max(int(need.clip(0).sum()) - len(self._dock[0]), 0)
        start = 0
        for colour, n in zip(PALETTE, need.clip(0)):
            sl = slice(start, start + int(n))
            out[self._dock[0][sl], self._dock[1][sl]] = colour
            start += int(n)
        return out


def record_interact(category: str, rng: np.random.Generator, length: int | tuple[int, int],
                    painter: InteractPainter | None = None) -> tuple[np.ndarray, str]:
    """One recording of interact ``category``: uint8 frames ``[T, H, W, 3]`` and its intent. ``length``: T or a
    range (lo, hi) T is drawn from uniformly; raised to :data:`MIN_FRAMES` for every category alike."""
    cat = INTERACT_CATEGORIES[category]
    p = painter or InteractPainter()
    if isinstance(length, int):
        n = max(length, MIN_FRAMES)
    else:
        n = int(rng.integers(max(length[0], MIN_FRAMES), max(length[1], MIN_FRAMES) + 1))
    wallpaper = (int(rng.integers(20, 50)), int(rng.integers(40, 70)), int(rng.integers(90, 130)))
    home = Panel("home", bg=int(rng.integers(226, 247)), wallpaper=wallpaper,
                 clock=f"{int(rng.integers(7, 13))}:{int(rng.integers(0, 60)):02d}")
    toggles = [int(x) for x in rng.integers(0, 2, len(SETTINGS))]
    settings = cat.action.startswith("turn")
    if settings:
        toggles[cat.target] = int(cat.action == "turn_off")
    lists = {"settings": replace(home, kind="settings", toggles=tuple(toggles)),
             "contacts": replace(home, kind="contacts")}
    app, other = ("settings", "contacts") if settings else ("contacts", "settings")
    rec = Recording(p, home)  # type: ignore[arg-type]
    # the home screen's frames are counted out (weight 0): when the app opens does not depend on the category
    rec.hold(home, 0.0, 1 + int(round(rng.uniform(0.05, 0.2) * (n - MIN_FRAMES + 2))))
    if rng.random() < 0.5:  # a detour through the other app
        rec.tap(home, p.icon_xy(other), weight=0.0)
        rec.hold(lists[other], 0.0, int(rng.integers(2, 5)))
        rec.hold(home, 0.0, 1)
    rec.tap(home, p.icon_xy(app), weight=0.0)
    if settings:
        s0 = lists["settings"]
        rec.hold(s0, 1.0)
        pressed, final = list(toggles), list(toggles)
        pressed[cat.target], final[cat.target] = 2, int(cat.action == "turn_on")
        rec.tap(s0, p.toggle_xy(cat.target), replace(s0, toggles=tuple(pressed)), weight=0.3)
        rec.hold(replace(s0, toggles=tuple(final)), 1.6)
    else:
        c0, page = lists["contacts"], replace(home, kind="contact", contact=cat.target)
        rec.hold(c0, 0.5)
        rec.tap(c0, p.row_xy(cat.target), weight=0.25)
        rec.hold(page, 1.1)
        rec.tap(page, p.button_xy(cat.action), weight=0.25)
        if cat.action == "call":
            call = replace(home, kind="call")
            rec.animate(lambda t: replace(call, ring=int(t * 11) % 4), 1.7)
        else:
            compose = replace(home, kind="compose")
            rec.hold(compose, 0.3)
            keys = [int(k) for k in rng.integers(0, 21, int(rng.integers(3, 5)))]
            for i, key in enumerate(keys):
                at = replace(compose, typed=i)
                rec.tap(at, p.key_xy(key), replace(at, pressed_key=key), weight=0.15, least=1)
            rec.hold(replace(compose, typed=len(keys)), 0.8)
    if rec.minimum > n:  # cannot happen with MIN_FRAMES as set (at most 21 + the home frames)
        raise AssertionError(f"{category}: {rec.minimum} frames needed, {n} drawn")
    return rec.frames(n), cat.intent
