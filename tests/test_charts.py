"""The reports' SVG charts, on literal points: where the axis starts, the seed band, the target line, the legend."""

import re

from visreward.miniature.charts import YAxis, line_chart, mean_and_spread

FRACTION = YAxis("accuracy", 0.0, 1.0, "accuracy starts at 0", {"target": 0.9})


def test_the_y_axis_starts_at_the_stated_reference_not_at_the_data():
    chart = line_chart({"a": [(0, 0.96), (1, 0.97)]}, "t", "x", FRACTION)
    # plot area y from 210 (bottom) to 12 (top); 0.96 of the way up from 0 is 210 - 0.96 * 198
    assert 'points="64.0,19.9 417.0,17.9"' in chart
    assert '<text x="52" y="214.0" text-anchor="end">0</text>' in chart  # the lowest tick is the reference, 0
    assert "y-axis from 0: accuracy starts at 0." in chart


def test_data_beyond_the_stated_range_extends_the_axis():
    chart = line_chart({"a": [(0, -1.0), (1, 3.0)]}, "t", "x", YAxis("moved", 0.0, 1.0, "0 is the base"))
    assert 'points="64.0,210.0 417.0,12.0"' in chart


def test_a_seed_spread_is_a_band_of_one_sd_and_none_without_one():
    banded = line_chart({"a": [(0, 0.5, 0.1), (1, 0.7, 0.1)]}, "t", "x", FRACTION)
    band = re.search(r'<polygon[^>]*points="([^"]+)"', banded).group(1)
    assert band == "64.0,91.2 417.0,51.6 417.0,91.2 64.0,130.8"  # 0.6, 0.8 up; 0.6, 0.4 back
    assert "Bands: ± 1 sd over seeds." in banded
    assert "<polygon" not in line_chart({"a": [(0, 0.5, 0.0), (1, 0.7, 0.0)]}, "t", "x", FRACTION)


def test_the_target_is_a_dashed_line_at_its_level():
    chart = line_chart({"a": [(0, 0.5), (1, 0.7)]}, "t", "x", FRACTION)
    assert '<line x1="56" y1="31.8" x2="425" y2="31.8" stroke="#555" stroke-dasharray="5 4"/>' in chart  # 0.9 up


def test_every_series_is_in_the_legend_under_the_chart():
    names = [f"proxy {i}" for i in range(7)]
    chart = line_chart({name: [(0, 0.1 * i), (1, 0.1 * i)] for i, name in enumerate(names)}, "t", "x", FRACTION)
    caption = chart[chart.index("<figcaption>"):]
    assert all(f"</span>{name}</span>" in caption for name in names)
    assert len(set(re.findall(r'polyline fill="none" stroke="([^"]+)"', chart))) == 7  # seven colours


def test_seeds_become_one_curve_with_their_sd_cut_to_the_shortest():
    assert mean_and_spread([[(1, 1.0), (2, 3.0), (3, 9.0)], [(1, 3.0), (2, 5.0)]]) == [
        (1, 2.0, 2 ** 0.5), (2, 4.0, 2 ** 0.5)]
    assert mean_and_spread([[(1, 1.0)]]) == [(1, 1.0, 0.0)]


def test_a_band_stops_at_what_the_measure_can_be():
    bounded = YAxis("accuracy", 0.0, 1.0, "accuracy starts at 0", bounds=(0.0, 1.0))
    chart = line_chart({"a": [(0, 0.9, 0.3), (1, 0.95, 0.1)]}, "t", "x", bounded)
    band = re.search(r'<polygon[^>]*points="([^"]+)"', chart).group(1)
    assert band == "64.0,12.0 417.0,12.0 417.0,41.7 64.0,91.2"  # tops 1.2 and 1.05 clipped at 1; back at 0.85, 0.6
    assert "<text x=\"52\" y=\"16.0\" text-anchor=\"end\">1</text>" in chart  # and the axis ends at 1
