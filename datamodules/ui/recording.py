"""A recording is a scripted sequence of screens and actions consistent with its intent: taps drawn as touch
indicators, typing key by key (the pressed key lights up, the character appears), scrolling (the content moves
under a dragging finger), navigation (the next screen slides in)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from .screens import Screen, ScreenPainter


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
