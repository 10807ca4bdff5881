"""The report's plots: headline score against accelerator-hours and against parameters."""

from __future__ import annotations

import pathlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.report.tables import ModelRow


PLOT_FILES = {"accelerator_hours": "score_vs_accelerator_hours.png", "parameters": "score_vs_parameters.png"}


def headline_series(rows: Sequence[ModelRow]) -> dict[str, list[tuple[ModelRow, float]]]:
    """Series to plot: GLUE average and sentiment average, each over the rows that have it."""
    series = {"GLUE average": [(row, row.glue_average) for row in rows if row.glue_average is not None],
              "sentiment average": [(row, row.sentiment_average) for row in rows
                                    if row.sentiment_average is not None]}
    return {name: points for name, points in series.items() if points}


def write_plots(rows: Sequence[ModelRow], out_dir: pathlib.Path | str) -> dict[str, pathlib.Path | str]:
    """Score against accelerator-hours and against parameters, one PNG each (local folder or URL)."""
    import io

    import matplotlib

    import storage

    matplotlib.use("Agg")
    from matplotlib import pyplot

    axes_specs = {
        "accelerator_hours": (lambda row: row.total_accelerator_hours,
                              "accelerator-hours: pre-training + fine-tuning "
                              "(hollow marker: pre-training cost unknown, fine-tuning only)"),
        "parameters": (lambda row: row.parameters / 1e6, "parameters (millions)"),
    }
    styles = {"GLUE average": ("o", "C0"), "sentiment average": ("s", "C1")}
    paths = {}
    for key, (x_of, x_label) in axes_specs.items():
        figure, axis = pyplot.subplots(figsize=(7.5, 5), dpi=120)
        xs_all = []
        for series, points in headline_series(rows).items():
            marker, color = styles[series]
            for row, score in points:
                x, y = x_of(row), 100 * score
                xs_all.append(x)
                hollow = key == "accelerator_hours" and row.pretrain_accelerator_hours is None
                axis.scatter([x], [y], marker=marker, s=60, edgecolors=color,
                             facecolors="none" if hollow else color, zorder=3)
                axis.annotate(row.label, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
            axis.scatter([], [], marker=marker, color=color, label=series)
        if xs_all and min(xs_all) > 0 and max(xs_all) / min(xs_all) > 20:
            axis.set_xscale("log")
        axis.set_xlabel(x_label, fontsize=9)
        axis.set_ylabel("score x100 (dev, mean over seeds)")
        axis.set_title(f"Score vs {'accelerator-hours' if key == 'accelerator_hours' else 'parameters'}")
        axis.grid(True, alpha=0.3)
        axis.margins(x=0.15, y=0.12)  # room for the point labels
        if xs_all:
            axis.legend(loc="best")
        figure.tight_layout()
        paths[key] = storage.as_given(storage.join(out_dir, PLOT_FILES[key]))
        image = io.BytesIO()  # matplotlib writes with open(); the bytes then go to any filesystem
        figure.savefig(image, format="png")
        storage.write_bytes(paths[key], image.getvalue())
        pyplot.close(figure)
    return paths
