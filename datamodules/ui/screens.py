"""Phone screens for the synthetic UI recordings, drawn with PIL: a status bar, a home screen with an app grid
of labelled icons, list screens (scrollable, with toggles or delete buttons), search and text fields with a
keyboard, buttons, chat bubbles, a map, a camera viewfinder, a photo grid."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

_APP_COLORS = {
    "Messages": (52, 199, 89), "Phone": (48, 176, 80), "Settings": (142, 142, 147), "Clock": (30, 30, 30),
    "Notes": (255, 204, 0), "Mail": (0, 122, 255), "Camera": (90, 90, 100), "Photos": (255, 149, 0),
    "Weather": (90, 200, 250), "Calendar": (255, 59, 48), "News": (200, 40, 60), "Contacts": (120, 120, 130),
    "Maps": (100, 180, 120), "Shopzy": (255, 120, 40), "Market": (150, 80, 200), "Tunes": (250, 45, 85),
    "Beats": (40, 40, 160), "Files": (30, 140, 230),
}
APPS = tuple(_APP_COLORS)


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
