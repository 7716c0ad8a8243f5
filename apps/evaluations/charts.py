"""The score-over-time chart of a leaderboard, laid out in SVG user units for the template."""

from dataclasses import dataclass
from datetime import UTC, datetime

from apps.evaluations.selectors import ScoreSeries

WIDTH = 640
HEIGHT = 280
LEFT = 56  # room for the score labels
RIGHT = 16
TOP = 16
BOTTOM = 40  # room for the date labels
# Distinguishable for common colour-vision deficiencies (Okabe and Ito's palette).
COLOURS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"]
Y_TICKS = 5


@dataclass(frozen=True)
class Dot:
    x: float
    y: float
    title: str
    result_id: int


@dataclass(frozen=True)
class Line:
    label: str
    colour: str
    points: str  # the polyline's "x,y x,y ..."
    dots: list[Dot]


@dataclass(frozen=True)
class Tick:
    position: float
    label: str


@dataclass(frozen=True)
class ScoreChart:
    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    lines: list[Line]
    y_ticks: list[Tick]
    x_ticks: list[Tick]


def _scale(value: float, low: float, high: float, start: float, end: float) -> float:
    if high == low:
        return round((start + end) / 2, 1)
    return round(start + (value - low) * (end - start) / (high - low), 1)


def _score_label(value: float) -> str:
    return f"{value:.4g}"


def score_chart(series: list[ScoreSeries], *, metric: str) -> ScoreChart | None:
    """One line per model version through its results' scores, oldest first; None when there
    is nothing to draw."""
    points = [point for entry in series for point in entry.points]
    if not points:
        return None
    times = [point.at.timestamp() for point in points]
    scores = [point.score for point in points]
    first, last = min(times), max(times)
    low, high = min(scores), max(scores)
    if low == high:
        low, high = low - 0.5, high + 0.5
    plot_right = WIDTH - RIGHT
    plot_bottom = HEIGHT - BOTTOM
    lines = []
    for index, entry in enumerate(series):
        dots = [
            Dot(
                x=_scale(point.at.timestamp(), first, last, LEFT, plot_right),
                y=_scale(point.score, low, high, plot_bottom, TOP),
                title=f"{entry.label}: {metric} {_score_label(point.score)}, "
                f"{point.at:%Y-%m-%d %H:%M}",
                result_id=point.result_id,
            )
            for point in entry.points
        ]
        lines.append(
            Line(
                label=entry.label,
                colour=COLOURS[index % len(COLOURS)],
                points=" ".join(f"{dot.x},{dot.y}" for dot in dots),
                dots=dots,
            )
        )
    y_ticks = [
        Tick(
            position=_scale(low + (high - low) * step / (Y_TICKS - 1), low, high, plot_bottom, TOP),
            label=_score_label(low + (high - low) * step / (Y_TICKS - 1)),
        )
        for step in range(Y_TICKS)
    ]
    x_ticks = [Tick(position=LEFT, label=_date_label(first))]
    if last > first:
        x_ticks.append(Tick(position=plot_right, label=_date_label(last)))
    return ScoreChart(WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM, lines, y_ticks, x_ticks)


def _date_label(timestamp: float) -> str:
    return f"{datetime.fromtimestamp(timestamp, tz=UTC):%Y-%m-%d %H:%M}"
