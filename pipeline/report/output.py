"""Result-table output: a :class:`Table` writes Markdown, CSV and JSON; :func:`scatter_plot` draws a PNG.

The trade-off report, ``study trims``, ``study layer-drop`` and ``search`` write their tables and plots
through this module, so every file has the same form:

- Markdown: ``| a | b |`` rows under a ``|---|`` rule (or ``| --- |``), joined by ``\\n``, ending in one ``\\n``;
- CSV: the ``csv`` module's defaults (quoted only when needed, ``\\r\\n`` line ends), an empty field for
  a missing value, numbers unrounded;
- JSON: two-space indented, ending in ``\\n``, the rows under ``"rows"`` after any other fields.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import storage

# A standard deviation over fewer seeds is not shown: over one it is 0, over two it is no estimate.
MIN_SEEDS_FOR_SPREAD = 3


def spread_known(seeds: int | None) -> bool:
    """Whether a mean over ``seeds`` seeds has a spread worth printing (None: not said, assumed so)."""
    return seeds is None or seeds >= MIN_SEEDS_FOR_SPREAD


def seed_count(seeds: int) -> str:
    """``1 seed``, ``2 seeds``."""
    return f"{seeds} seed{'' if seeds == 1 else 's'}"


def percent(value: float | None, std: float | None = None, missing: str = "", seeds: int | None = None) -> str:
    """A fraction as x100 with one decimal (``0.853`` -> ``85.3``), with ``± std`` when given.

    Args:
        value: the fraction (0..1); ``None`` gives ``missing``.
        std: its standard deviation, also a fraction; ``None`` leaves it out.
        missing: the text for a missing value.
        seeds: how many seeds ``value`` and ``std`` are over; below :data:`MIN_SEEDS_FOR_SPREAD` the
            count is printed instead of the std (``85.3 (1 seed)``).
    """
    if value is None:
        return missing
    if std is None:
        return f"{100 * value:.1f}"
    if not spread_known(seeds):
        return f"{100 * value:.1f} ({seed_count(seeds)})"
    return f"{100 * value:.1f} ± {100 * std:.1f}"


def percent_difference(value: float, reference: float) -> str:
    """``value - reference`` x100 with its sign and one decimal (``+2.5``, ``-10.0``)."""
    return f"{100 * (value - reference):+.1f}"


def thousands(value: int | None) -> str:
    """An integer with thousands separators (``1,234,567``); empty for ``None``."""
    return "" if value is None else f"{value:,}"


def decimals(digits: int) -> Callable[[float | None], str]:
    """A cell format with ``digits`` decimals (``decimals(2)(1.5)`` is ``1.50``); empty for ``None``."""
    return lambda value: "" if value is None else f"{value:.{digits}f}"


def plain(value: Any) -> str:
    """The default cell text: ``str(value)``, empty for ``None``."""
    return "" if value is None else str(value)


@dataclasses.dataclass(frozen=True)
class Column:
    """One column of a :class:`Table`.

    Args:
        name: the header (Markdown and CSV) and the key of the column in a JSON row.
        value: the row's value in this column, unrounded; ``None`` when missing (an empty CSV field).
        text: the Markdown cell for that value (called with ``None`` too); default ``str``, empty for ``None``.
    """

    name: str
    value: Callable[[Any], Any]
    text: Callable[[Any], str] = plain


@dataclasses.dataclass(frozen=True)
class Table:
    """Columns over rows, written as Markdown, CSV or JSON.

    Args:
        columns: the columns, in order.
        rows: the row objects, in order; each column reads its value from a row.
        data: what a row becomes in JSON; default the column names mapped to the column values.
    """

    columns: Sequence[Column]
    rows: Sequence[Any]
    data: Callable[[Any], Any] | None = None

    def markdown_lines(self, spaced_rule: bool = False) -> list[str]:
        """The header, the rule (``|---|---|``, or ``| --- | --- |`` when ``spaced_rule``) and a line per row."""
        rule = "| --- " * len(self.columns) + "|" if spaced_rule else "|" + "---|" * len(self.columns)
        return [_markdown_line([column.name for column in self.columns]), rule,
                *(_markdown_line([column.text(column.value(row)) for column in self.columns]) for row in self.rows)]

    def csv_text(self) -> str:
        """A header line and a line per row."""
        handle = io.StringIO(newline="")
        writer = csv.writer(handle)
        writer.writerow([column.name for column in self.columns])
        for row in self.rows:
            writer.writerow([column.value(row) for column in self.columns])  # the csv module writes None as ""
        return handle.getvalue()

    def json_rows(self) -> list:
        """Each row as plain data (``data``, or column name -> value)."""
        if self.data is not None:
            return [self.data(row) for row in self.rows]
        return [{column.name: column.value(row) for column in self.columns} for row in self.rows]

    def write_csv(self, path: str | os.PathLike) -> None:
        """The CSV text, written whole (one object write on object storage)."""
        storage.write_text(path, self.csv_text())

    def write_json(self, path: str | os.PathLike, fields: Mapping[str, Any] | None = None) -> None:
        """``{**fields, "rows": [...]}`` as indented JSON.

        Args:
            path: the file (local or a URL).
            fields: what the document says before its rows (title, settings, findings ...).
        """
        storage.write_json(path, {**(fields or {}), "rows": self.json_rows()})


def _markdown_line(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def markdown_text(lines: Sequence[str]) -> str:
    """Markdown lines as one text ending in a newline."""
    return "\n".join(lines) + "\n"


def write_markdown(path: str | os.PathLike, lines: Sequence[str]) -> None:
    """Writes :func:`markdown_text` of ``lines`` (local or a URL)."""
    storage.write_text(path, markdown_text(lines))


@dataclasses.dataclass(frozen=True)
class Point:
    """One point of a scatter plot.

    Args:
        x: position on the x axis.
        y: position on the y axis.
        label: text written beside the point; empty for none.
        hollow: draw the marker's outline only.
        shade: the number the point's colour shows (a series with ``shade_label``).
    """

    x: float
    y: float
    label: str = ""
    hollow: bool = False
    shade: float | None = None


@dataclasses.dataclass(frozen=True)
class Series:
    """Points drawn alike.

    Args:
        points: the points, in order (the order of the line when ``joined``).
        name: the legend entry; ``None`` for none.
        marker: a matplotlib marker (``o`` circle, ``s`` square ...).
        color: a matplotlib colour; ``None`` takes the next colour of matplotlib's cycle.
        size: marker area in points².
        joined: a dashed line through the points, drawn above unjoined series.
        shade_label: colour each point by its ``shade`` (viridis), with a colour bar so labelled.
    """

    points: Sequence[Point]
    name: str | None = None
    marker: str = "o"
    color: str | None = None
    size: float = 60
    joined: bool = False
    shade_label: str | None = None


def scatter_plot(path: str | os.PathLike, series: Sequence[Series], x_label: str, y_label: str,
                 title: str | None = None, log_x_when_wide: bool = False) -> None:
    """Writes a scatter plot as PNG (matplotlib's Agg backend; local or a URL).

    Args:
        path: the PNG file.
        series: what to draw, in order.
        x_label: the x axis label.
        y_label: the y axis label.
        title: the plot's title; ``None`` for none.
        log_x_when_wide: a logarithmic x axis when every x is positive and the largest is over 20x the smallest.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    cycle = pyplot.rcParams["axes.prop_cycle"].by_key()["color"]
    figure, axes = pyplot.subplots(figsize=(7.5, 5), dpi=120)
    default_colors = 0
    for one in series:
        color = one.color
        if color is None:
            color, default_colors = cycle[default_colors % len(cycle)], default_colors + 1
        _draw_series(figure, axes, one, color)
    xs = [point.x for one in series for point in one.points]
    if log_x_when_wide and xs and min(xs) > 0 and max(xs) / min(xs) > 20:
        axes.set_xscale("log")
    axes.set_xlabel(x_label, fontsize=9)
    axes.set_ylabel(y_label)
    if title is not None:
        axes.set_title(title)
    axes.grid(True, alpha=0.3)
    axes.margins(x=0.15, y=0.12)  # room for the point labels
    if any(one.name is not None for one in series):
        axes.legend(loc="best")
    figure.tight_layout()
    image = io.BytesIO()  # matplotlib writes with open(); the bytes then go to any filesystem
    figure.savefig(image, format="png")
    pyplot.close(figure)
    storage.write_bytes(path, image.getvalue())


def _draw_series(figure, axes, series: Series, color: str) -> None:
    xs, ys = [point.x for point in series.points], [point.y for point in series.points]
    zorder = 3 if series.joined else 2
    if series.joined:
        axes.plot(xs, ys, linestyle="--", color=color, zorder=zorder)
    if series.shade_label is not None:
        shaded = axes.scatter(xs, ys, c=[point.shade for point in series.points], cmap="viridis", marker=series.marker,
                              s=series.size, zorder=zorder)
        figure.colorbar(shaded, ax=axes, label=series.shade_label)
    else:
        axes.scatter(xs, ys, marker=series.marker, s=series.size, edgecolors=color, zorder=zorder,
                     facecolors=["none" if point.hollow else color for point in series.points])
    for point in series.points:
        if point.label:
            axes.annotate(point.label, (point.x, point.y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    if series.name is not None:  # the legend shows the marker filled, unless every point is hollow
        hollow = bool(series.points) and all(point.hollow for point in series.points)
        axes.plot([], [], linestyle="--" if series.joined else "none", marker=series.marker, color=color,
                  markersize=series.size ** 0.5, markerfacecolor="none" if hollow else color, label=series.name)
