"""The result-table writer on a two-row table (literal Markdown, CSV and JSON) and the scatter plot's PNG."""

import pytest

from pipeline.report import output

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture()
def table():
    rows = [{"name": "tiny", "parameters": 4_400_000, "score": 0.8534, "blocks": (0, 1)},
            {"name": "small, wide", "parameters": 12_000, "score": None, "blocks": ()}]
    return output.Table([
        output.Column("name", lambda row: row["name"]),
        output.Column("parameters", lambda row: row["parameters"], output.thousands),
        output.Column("score", lambda row: row["score"], output.percent),
        output.Column("blocks", lambda row: list(row["blocks"]), lambda blocks: ",".join(map(str, blocks)) or "-"),
    ], rows)


def test_markdown_rows_and_both_rules(table):
    assert output.markdown_text(["# Title", "", *table.markdown_lines()]) == (
        "# Title\n"
        "\n"
        "| name | parameters | score | blocks |\n"
        "|---|---|---|---|\n"
        "| tiny | 4,400,000 | 85.3 | 0,1 |\n"
        "| small, wide | 12,000 |  | - |\n")
    assert table.markdown_lines(spaced_rule=True)[1] == "| --- | --- | --- | --- |"


def test_csv_is_unrounded_with_empty_missing_values(table, tmp_path):
    table.write_csv(tmp_path / "table.csv")
    assert (tmp_path / "table.csv").read_bytes() == (
        b"name,parameters,score,blocks\r\n"
        b"tiny,4400000,0.8534,\"[0, 1]\"\r\n"
        b"\"small, wide\",12000,,[]\r\n")


def test_json_puts_the_fields_before_the_rows(table, tmp_path):
    table.write_json(tmp_path / "table.json", {"title": "T"})
    assert (tmp_path / "table.json").read_text() == """\
{
  "title": "T",
  "rows": [
    {
      "name": "tiny",
      "parameters": 4400000,
      "score": 0.8534,
      "blocks": [
        0,
        1
      ]
    },
    {
      "name": "small, wide",
      "parameters": 12000,
      "score": null,
      "blocks": []
    }
  ]
}
"""
    table = output.Table(table.columns, table.rows, data=lambda row: row["name"])
    assert table.json_rows() == ["tiny", "small, wide"]


def test_number_formats():
    assert output.percent(0.8534, 0.0123) == "85.3 ± 1.2"
    assert output.percent(None) == "" and output.percent(None, missing="–") == "–"
    assert output.percent_difference(0.5, 0.6) == "-10.0" and output.percent_difference(0.6, 0.5) == "+10.0"
    assert output.decimals(2)(1.5) == "1.50" and output.decimals(0)(None) == ""


def test_a_spread_needs_three_seeds():
    """With fewer than three seeds the count is printed instead of the std (over one seed it is 0)."""
    assert output.percent(0.853, 0.0, seeds=1) == "85.3 (1 seed)"
    assert output.percent(0.853, 0.02, seeds=2) == "85.3 (2 seeds)"
    assert output.percent(0.853, 0.02, seeds=3) == "85.3 ± 2.0"
    assert output.percent(0.853, 0.02) == "85.3 ± 2.0"  # the seeds not said
    assert output.percent(None, 0.02, missing="–", seeds=1) == "–"


def test_scatter_plot_writes_a_png_with_its_labels(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    seen = {}
    save = Figure.savefig

    def savefig(figure, *args, **kwargs):  # what the saved figure shows, then the real save
        plot, colorbar = figure.axes
        seen.update(x=plot.get_xlabel(), y=plot.get_ylabel(), title=plot.get_title(), scale=plot.get_xscale(),
                    points=sorted(text.get_text() for text in plot.texts),
                    legend=[text.get_text() for text in plot.get_legend().get_texts()], shade=colorbar.get_ylabel())
        return save(figure, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    path = tmp_path / "plot.png"
    output.scatter_plot(path, [
        output.Series([output.Point(1.0, 50.0, "a", shade=2.0), output.Point(30.0, 60.0, shade=3.0)],
                      shade_label="latency (ms)"),
        output.Series([output.Point(1.0, 50.0, "b", hollow=True)], name="front", marker="s", color="C1", joined=True),
    ], "parameters (millions)", "score x100", "Score vs parameters", log_x_when_wide=True)
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    assert seen == {"x": "parameters (millions)", "y": "score x100", "title": "Score vs parameters", "scale": "log",
                    "points": ["a", "b"], "legend": ["front"], "shade": "latency (ms)"}
