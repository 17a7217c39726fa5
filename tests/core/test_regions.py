"""Region groups: countries and free-text locations land in US, EU, APAC or Other."""

from __future__ import annotations

import pytest

from gpusupply.core.regions import country_from_geolocation, group_for_country, parse_region_group


@pytest.mark.parametrize(
    ("country", "group"),
    [
        ("US", "US"), ("us", "US"), ("CA", "US"), ("DE", "EU"), ("GB", "EU"), ("UK", "EU"), ("NO", "EU"),
        ("CH", "EU"), ("JP", "APAC"), ("SG", "APAC"), ("AU", "APAC"), ("IN", "APAC"), ("BR", "Other"),
        ("IL", "Other"), ("", "Other"), (None, "Other"), ("ZZ", "Other"),
    ],
)
def test_group_for_country(country: str | None, group: str) -> None:
    assert group_for_country(country) == group


@pytest.mark.parametrize(
    ("text", "country"),
    [
        ("California, US", "US"),
        ("Texas, us", "US"),
        ("Ontario, Canada", "CA"),
        ("California, United States", "US"),
        ("Atlantis, AT", "AT"),
        ("Tokyo, Japan", "JP"),
        ("Somewhere, Narnia", None),
        ("US", "US"),
        ("", None),
        (None, None),
    ],
)
def test_country_from_geolocation(text: str | None, country: str | None) -> None:
    assert country_from_geolocation(text) == country


@pytest.mark.parametrize(
    ("value", "group"),
    [("US", "US"), ("eu", "EU"), (" apac ", "APAC"), ("other", "Other"), ("Europe", None), ("", None)],
)
def test_parse_region_group(value: str, group: str | None) -> None:
    assert parse_region_group(value) == group
