"""The timeline picture's geometry, apart from the SVG: buckets, ticks, label rows, marks.

Pure functions on numbers, so each rule of the picture (bars stay inside the axis, ticks are
round, labels never sit on each other) is tested without drawing anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from sidecar.drill.load import Request

#: Width of one character of the picture's 11 px sans-serif text, a little generous.
CHAR_PX = 6.2


def text_width(text: str) -> float:
    """Roughly how wide `text` is drawn, in pixels."""
    return CHAR_PX * len(text)


@dataclass
class Bucket:
    """The requests that started in one slice of time, by who answered them."""

    start: float
    deleted: int = 0
    others: int = 0
    failed: int = 0

    @property
    def total(self) -> int:
        """Every request of the bucket: the height of its stacked bar."""
        return self.deleted + self.others + self.failed


def buckets(
    requests: Iterable[Request], origin: float, width: float, deleted_pod: str
) -> list[Bucket]:
    """Requests counted per `width` seconds of start time (from `origin`), in time order.

    Answered requests count for the pod that answered (`served_by`): the deleted one, or the
    others (also when no pod said who it was); failures count apart, whoever had them.
    """
    slots: dict[int, Bucket] = {}
    for request in requests:
        slot = math.floor((request.started - origin) / width)
        bucket = slots.setdefault(slot, Bucket(slot * width))
        if request.kind != "ok":
            bucket.failed += 1
        elif request.served_by == deleted_pod:
            bucket.deleted += 1
        else:
            bucket.others += 1
    return [slots[slot] for slot in sorted(slots)]


def nice_step(span: float, most: int) -> float:
    """The smallest 1, 2 or 5 times a power of ten that cuts `span` into at most `most` steps."""
    if span <= 0 or most < 1:
        return 1.0
    raw = span / most
    power = 10.0 ** math.floor(math.log10(raw))
    for factor in (1.0, 2.0, 5.0, 10.0):
        if factor * power >= raw * (1 - 1e-9):
            return factor * power
    return 10.0 * power  # pragma: no cover - 10 is always enough


def ticks(low: float, high: float, most: int = 5) -> list[float]:
    """Round tick values from at most `low` to at least `high`, at most `most` steps apart."""
    if high <= low:
        high = low + 1.0
    step = nice_step(high - low, most)
    first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
    # Rounding keeps 0.1 * 3 from showing as 0.30000000000000004.
    return [round(i * step, 10) for i in range(first, last + 1)]


def label_rows(spans: Sequence[tuple[float, float]], gap: float = 6.0) -> list[int]:
    """A row for each (left, right) span so that spans in one row are `gap` apart or more.

    Greedy by left edge: each span takes the first row it fits in. Returns the row of each
    span in the order given.
    """
    ends: list[float] = []
    rows = [0] * len(spans)
    for index in sorted(range(len(spans)), key=lambda i: (spans[i][0], spans[i][1])):
        left, right = spans[index]
        row = next((r for r, end in enumerate(ends) if end + gap <= left), len(ends))
        if row == len(ends):
            ends.append(right)
        else:
            ends[row] = right
        rows[index] = row
    return rows


@dataclass(frozen=True)
class Mark:
    """A moment drawn as a line across the plot, with its label."""

    label: str
    seconds: float
    colour: str


@dataclass(frozen=True)
class MarkGroup:
    """Marks close enough to share one line position and one label."""

    marks: tuple[Mark, ...]

    @property
    def seconds(self) -> float:
        """Where the group's label is anchored: its first mark."""
        return self.marks[0].seconds

    @property
    def text(self) -> str:
        """`a 1.0 s` alone; `a, b 1.0 s` when they round alike, else `a 1.0 s, b 1.1 s`."""
        shown = [f"{m.seconds:.1f}" for m in self.marks]
        if len(set(shown)) == 1:
            return f"{', '.join(m.label for m in self.marks)} {shown[0]} s"
        return ", ".join(f"{m.label} {s} s" for m, s in zip(self.marks, shown, strict=True))


def merge_marks(
    marks: Iterable[Mark], x: Callable[[float], float], within_px: float = 4.0
) -> list[MarkGroup]:
    """Marks in time order, those within `within_px` of their group's first mark merged."""
    groups: list[list[Mark]] = []
    for mark in sorted(marks, key=lambda m: m.seconds):
        if groups and x(mark.seconds) - x(groups[-1][0].seconds) <= within_px:
            groups[-1].append(mark)
        else:
            groups.append([mark])
    return [MarkGroup(tuple(group)) for group in groups]


def fit_left(x: float, width: float, right_edge: float) -> float:
    """Where a label meant to start at `x` starts: there, or as far right as it fits whole."""
    return max(0.0, min(x, right_edge - width))
