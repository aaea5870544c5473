"""The drill picture's layout and SVG primitives, shared by its panels and its phase strip."""

from __future__ import annotations

from xml.sax.saxutils import escape

WIDTH, LEFT, RIGHT, TOP = 900, 70, 20, 64
PLOT_WIDTH = WIDTH - LEFT - RIGHT
PLOT_HEIGHT, ROW, LANE = 110, 14, 12


def element(tag: str, text: str = "", **attributes: object) -> str:
    """One SVG element; attribute names with underscores become dashes."""
    attrs = " ".join(
        f'{k.replace("_", "-")}="{escape(str(v), {chr(34): "&quot;"})}"'
        for k, v in attributes.items()
    )
    return f"<{tag} {attrs}>{escape(text)}</{tag}>" if text else f"<{tag} {attrs}/>"


def label_text(text: str, x: float, y: float, colour: str = "#333") -> str:
    """Text with a white halo, readable where a mark's line runs under it."""
    return element(
        "text",
        text,
        x=f"{x:.1f}",
        y=f"{y:.1f}",
        fill=colour,
        stroke="white",
        stroke_width=3,
        paint_order="stroke",
    )


class Axis:
    """Maps seconds from the DELETE to x, the same for every panel."""

    def __init__(self, start: float, end: float) -> None:
        self.start, self.end = start, end

    def x(self, t: float) -> float:
        """The x of `t` seconds from the DELETE."""
        span = max(self.end - self.start, 1e-9)
        return LEFT + (t - self.start) / span * PLOT_WIDTH
