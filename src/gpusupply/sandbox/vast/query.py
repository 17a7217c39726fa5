"""Vast's query language, evaluated over numpy columns: the operators of offer search and of the
v1 instance filters (`{"field": {"op": value}}`), with Vast's coercions and sort order."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

OPERATORS = ("eq", "neq", "gt", "lt", "gte", "lte", "in", "notin")

# ----- query engine (shared by offer search and the v1 instance filters) -----------------------


class QueryError(ValueError):
    """A query the vendor refuses (400)."""


def normalize_text(value: Any) -> str:
    """How Vast compares strings: `_` and space are the same, case does not matter."""
    return " ".join(str(value).replace("_", " ").split()).lower()


@dataclass(frozen=True, slots=True)
class Column:
    """One field over many rows, typed for comparison. Text is normalized; null is None (text)
    or NaN (numbers, booleans as 0/1). `alt` is a second text a value may match (country code)."""

    kind: Literal["num", "bool", "str"]
    values: np.ndarray
    alt: np.ndarray | None = None


def coerce_scalar(name: str, kind: str, value: Any) -> float:
    """A query value as a number; numeric strings are coerced ("0.99", "1")."""
    if kind == "bool":
        if isinstance(value, bool):
            return float(value)
        text = str(value).strip().lower()
        if text in ("true", "1"):
            return 1.0
        if text in ("false", "0"):
            return 0.0
        raise QueryError(f"{name}: {value!r} is not a boolean")
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise QueryError(f"{name}: {value!r} is not a number")


def _null_mask(column: Column) -> np.ndarray:
    if column.kind == "str":
        return np.asarray(column.values == None, dtype=bool)  # noqa: E711 - elementwise on an object array
    return np.isnan(column.values)


def _equal_mask(name: str, column: Column, value: Any) -> np.ndarray:
    if value is None:
        return _null_mask(column)
    if column.kind == "str":
        target = normalize_text(value)
        mask = np.asarray(column.values == target, dtype=bool)
        if column.alt is not None:
            mask |= np.asarray(column.alt == target, dtype=bool)
        return mask
    return np.asarray(column.values == coerce_scalar(name, column.kind, value), dtype=bool)


def column_mask(name: str, column: Column, op: str, value: Any) -> np.ndarray:
    """Rows where `field op value` holds (pure; vectorised over the column)."""
    if op not in OPERATORS:
        raise QueryError(f"{name}: unknown operator {op!r}; use one of {', '.join(OPERATORS)}")
    if op in ("in", "notin"):
        if not isinstance(value, list):
            raise QueryError(f"{name}: {op} needs a list of values")
        mask = np.zeros(len(column.values), dtype=bool)
        for item in value:
            mask |= _equal_mask(name, column, item)
        return ~mask if op == "notin" else mask
    if op in ("eq", "neq"):
        mask = _equal_mask(name, column, value)
        return ~mask if op == "neq" else mask
    if column.kind == "str":
        raise QueryError(f"{name}: {op} needs a numeric field")
    number = coerce_scalar(name, column.kind, value)
    values = column.values
    with np.errstate(invalid="ignore"):
        if op == "gt":
            return values > number
        if op == "gte":
            return values >= number
        if op == "lt":
            return values < number
        return values <= number


def parse_filters(query: dict[str, Any], skip: frozenset[str] = frozenset()) -> list[tuple[str, str, Any]]:
    """`{"num_gpus": {"gte": 2}, ...}` -> [("num_gpus", "gte", 2), ...]; control keys skipped."""
    filters: list[tuple[str, str, Any]] = []
    for name, condition in query.items():
        if name in skip:
            continue
        if not isinstance(condition, dict):
            raise QueryError(f"{name}: a filter must be an object like {{\"eq\": value}}")
        for op, value in condition.items():
            if op not in OPERATORS:
                raise QueryError(f"{name}: unknown operator {op!r}; use one of {', '.join(OPERATORS)}")
            filters.append((name, op, value))
    return filters


TEXT_FIELDS = frozenset({
    "actual_status", "intended_status", "cur_state", "next_state", "label", "gpu_name", "verification", "geolocation",
    "image_uuid", "image_runtype", "status_msg", "onstart", "ssh_host", "public_ipaddr", "cpu_name", "cpu_arch",
    "gpu_arch", "disk_name", "mobo_name", "os_version", "driver_version", "template_hash_id", "template_name",
    "country_code", "jupyter_token", "local_ipaddrs", "logo", "webpage", "time_remaining", "time_remaining_isbid",
})


def column_from_rows(name: str, rows: Sequence[dict[str, Any]]) -> Column:
    """A Column over dict rows (instances): text for text fields, numbers otherwise."""
    raw = [row.get(name) for row in rows]
    if name in TEXT_FIELDS or any(isinstance(v, str) for v in raw):
        values = np.array([None if v is None else normalize_text(v) for v in raw] or [], dtype=object)
        alt = None
        if name == "geolocation":
            alt = np.array([None if v is None else normalize_text(str(v).rsplit(",", 1)[-1]) for v in raw], dtype=object)
        return Column("str", values, alt)
    kind: Literal["num", "bool"] = "bool" if raw and all(v is None or isinstance(v, bool) for v in raw) else "num"
    numbers = np.array([math.nan if v is None or not isinstance(v, int | float) else float(v) for v in raw], dtype=float)
    return Column(kind, numbers)


def sort_indices(keys: Sequence[tuple[Column, bool]], tiebreak: np.ndarray) -> np.ndarray:
    """Row order for [(column, descending), ...], then `tiebreak` ascending (np.lexsort: last key first)."""
    sort_keys: list[np.ndarray] = [tiebreak]
    for column, descending in reversed(keys):
        if column.kind == "str":
            text = np.array(["" if v is None else v for v in column.values], dtype=object).astype(str)
            _, codes = np.unique(text, return_inverse=True)
            key = codes.astype(float)
        else:
            key = column.values.astype(float)
        sort_keys.append(-key if descending else key)
    return np.lexsort(sort_keys)
