"""The evidence pack's charts, drawn with matplotlib (imported here only): PNG for the PDF, SVG with real
text for the HTML. Each chart has a caption and the figures are in a table beside it."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from optout.governance.document import Chart
from optout.governance.freshness import Sample, StalePeriod

_BLUE, _RED, _GREY = "#005eb8", "#d5281b", "#4c6272"
_PURPOSE_COLOURS = ["#005eb8", "#007f3b", "#ffb81c", "#330072", "#ae2573", "#4c6272"]


def freshness(
    samples: Sequence[Sample],
    periods: Sequence[StalePeriod],
    max_age: timedelta,
    *,
    blocked: Sequence[datetime] = (),
    caption: str,
) -> Chart:
    """The age of the list in use over time against the maximum age; stale periods shaded red."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.4))
    ages = [s.age_hours if s.age_hours is not None else float("nan") for s in samples]
    ax.plot([s.at for s in samples], ages, color=_BLUE, linewidth=1.2, label="age of the list in use (hours)")
    ax.axhline(max_age.total_seconds() / 3600, color=_RED, linestyle="--", linewidth=1, label="maximum age")
    for i, period in enumerate(periods):
        ax.axvspan(period.start, period.end, color=_RED, alpha=0.15, label="stale: exports refused" if i == 0 else None)
    if blocked:
        top = max((a for a in ages if a == a), default=max_age.total_seconds() / 3600)
        ax.plot(blocked, [top] * len(blocked), "x", color=_RED, label="export refused")
    ax.set_ylabel("hours since the check")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    _dates(ax, fig)
    return _finish(plt, fig, caption)


def monthly(counts: Mapping[str, Mapping[str, int]], *, caption: str, ylabel: str) -> Chart:
    """Stacked bars: ``counts[month][series]``, months in the order given."""
    plt = _pyplot()
    months = list(counts)
    series = sorted({name for by in counts.values() for name in by})
    fig, ax = plt.subplots(figsize=(9, 3.2))
    bottom = [0] * len(months)
    places = list(range(len(months)))
    for i, name in enumerate(series):
        values = [counts[m].get(name, 0) for m in months]
        ax.bar(places, values, bottom=bottom, color=_PURPOSE_COLOURS[i % len(_PURPOSE_COLOURS)], label=name)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_ylabel(ylabel)
    ax.yaxis.get_major_locator().set_params(integer=True)
    if series:
        ax.legend(fontsize=8, frameon=False, ncols=min(len(series), 4), loc="upper left")
        ax.set_ylim(top=max(bottom) * 1.3 or 1)
    ax.set_xticks(places, months, fontsize=8)
    return _finish(plt, fig, caption)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "none", "font.size": 9, "axes.spines.top": False, "axes.spines.right": False})
    return plt


def _dates(ax: Any, fig: Any) -> None:
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator(maxticks=12)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def _finish(plt: Any, fig: Any, caption: str) -> Chart:
    fig.tight_layout()
    png, svg = io.BytesIO(), io.StringIO()
    fig.savefig(png, format="png", dpi=150)
    fig.savefig(svg, format="svg")
    plt.close(fig)
    return Chart(caption, png.getvalue(), svg.getvalue())
