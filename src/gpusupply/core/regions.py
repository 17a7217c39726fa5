"""Region groups: every vendor region or country lands in one of US, EU, APAC, Other.

"US" is North America (United States and Canada): users asking for "US" want low latency to
North American users, and Canadian datacenters serve that. Decision recorded in docs/vendors.md.
"""

from __future__ import annotations

from typing import Literal

RegionGroup = Literal["US", "EU", "APAC", "Other"]
REGION_GROUPS: tuple[RegionGroup, ...] = ("US", "EU", "APAC", "Other")

_US = {"US", "CA"}
_EU = {
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV",
    "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE", "GB", "UK", "NO", "CH", "IS",
}
_APAC = {"JP", "KR", "SG", "AU", "NZ", "IN", "TW", "HK", "CN", "MY", "TH", "VN", "ID", "PH"}

# Country names as they appear in free text ("California, United States", "Ontario, Canada").
_COUNTRY_NAMES = {
    "united states": "US", "usa": "US", "canada": "CA", "germany": "DE", "france": "FR",
    "netherlands": "NL", "united kingdom": "GB", "sweden": "SE", "norway": "NO", "finland": "FI",
    "poland": "PL", "spain": "ES", "italy": "IT", "czechia": "CZ", "iceland": "IS",
    "japan": "JP", "south korea": "KR", "korea": "KR", "singapore": "SG", "australia": "AU",
    "india": "IN", "taiwan": "TW", "hong kong": "HK", "brazil": "BR", "israel": "IL",
}


def group_for_country(country_code: str | None) -> RegionGroup:
    code = (country_code or "").strip().upper()
    if code in _US:
        return "US"
    if code in _EU:
        return "EU"
    if code in _APAC:
        return "APAC"
    return "Other"


def country_from_geolocation(text: str | None) -> str | None:
    """Vast-style "California, US" or "Ontario, Canada" -> two-letter country code."""
    if not text:
        return None
    tail = text.rsplit(",", 1)[-1].strip()
    if len(tail) == 2 and tail.isalpha():
        return tail.upper()
    return _COUNTRY_NAMES.get(tail.lower())


def parse_region_group(value: str) -> RegionGroup | None:
    """Case-insensitive match of a user's region filter; None when it is not a group."""
    for group in REGION_GROUPS:
        if group.lower() == value.strip().lower():
            return group
    return None
