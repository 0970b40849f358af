"""job.months: the one place months are parsed and written."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from job.errors import ConfigError
from job.months import month_label, month_labels, month_str, parse_month


def test_months_are_written_yyyy_mm() -> None:
    assert month_str(pd.Period("2015-06", "M")) == "2015-06"
    assert month_label(pd.Period("0999-01", "M")) == "0999-01"
    assert month_label(pd.Timestamp("2020-02-29")) == "2020-02"
    assert month_label("2020-03") == "2020-03"
    assert month_labels([pd.Period("2020-01", "M"), pd.Timestamp("2020-02-10"), "x"]) == ["2020-01", "2020-02", "x"]


def test_parse_month_round_trips_and_names_bad_input() -> None:
    assert parse_month("2024-12") == pd.Period("2024-12", "M")
    assert parse_month(date(2024, 5, 17)) == pd.Period("2024-05", "M")
    with pytest.raises(ConfigError, match="invalid month"):
        parse_month("2024-13")
