"""The rules every piece of user input passes, whatever the route: text without NUL or lone
surrogates, integers bounded before they are parsed.

- Text: PostgreSQL cannot store NUL (U+0000) in text, and a lone surrogate (U+D800-U+DFFF, which
  JSON can write as "\\ud800" and YAML as "\\uD800") is not Unicode: it cannot be encoded as
  UTF-8, stored or sent on. Both are refused with a 422 naming the field, on every database.
  `CheckedModel` applies the rule to every field of a request body (nested lists and mappings,
  keys included); `Text` to one value (query parameters); `require_text` to the arguments of
  services the console calls without a request model.
- Integers: Python refuses to parse a decimal of more than 4,300 digits (ValueError, a 500 before
  this) and parsing grows quadratically below that. A literal with more than `MAX_INT_DIGITS`
  significant digits is read as `±10**MAX_INT_DIGITS` instead: past every bound we have, so the
  field's own range check answers as for any other out-of-range value ("Input should be less
  than or equal to 1024"). Every integer field must be bounded for that to hold.

Pure; pydantic only (no server code), so clients can reuse the models.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from gpusupply.core.errors import UnprocessableError

MAX_INT_DIGITS = 64
TOO_LARGE = 10**MAX_INT_DIGITS  # stands for any integer literal longer than MAX_INT_DIGITS digits
_BAD_CHARACTER = re.compile("[\x00\ud800-\udfff]")
_DECIMAL = re.compile(r"[+-]?[0-9]+")


# ----- text ---------------------------------------------------------------------------------------
def text_refusal(value: str) -> str | None:
    """Why this text is refused ("contains a NUL character (\\x00)"), or None when it is fine."""
    found = _BAD_CHARACTER.search(value)
    if found is None:
        return None
    if found.group() == "\x00":
        return "contains a NUL character (\\x00), which is not accepted"
    return f"contains a lone surrogate (\\u{ord(found.group()):04x}), which is not valid Unicode; send UTF-8 text"


def find_bad_text(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """(where, why) for each refused string in `value`: strings, list items, mapping keys and values."""
    if isinstance(value, str):
        refusal = text_refusal(value)
        if refusal is not None:
            yield path, refusal
    elif isinstance(value, Mapping):
        for key, item in value.items():
            refusal = text_refusal(key) if isinstance(key, str) else None
            where = f"{path}.{key}" if refusal is None else f"a key of {path}"
            if refusal is not None:
                yield where, refusal
            yield from find_bad_text(item, where)
    elif isinstance(value, list | tuple | set | frozenset):
        for index, item in enumerate(value):
            yield from find_bad_text(item, f"{path}[{index}]")


def require_text(values: Mapping[str, str | None], *, loc: tuple[str | int, ...]) -> None:
    """For services called without a request model (the console): a 422 at `(*loc, name)` for the
    first value that holds NUL or a lone surrogate."""
    for name, value in values.items():
        refusal = text_refusal(value) if value is not None else None
        if refusal is not None:
            raise UnprocessableError(f"{name} {refusal}", loc=(*loc, name))


def check_text(value: str, name: str) -> str:
    """`value`, or a PydanticCustomError naming `name` (inside a validator)."""
    refusal = text_refusal(value)
    if refusal is not None:
        raise PydanticCustomError("text_invalid", "{name} {refusal}", {"name": name, "refusal": refusal})
    return value


def _checked_text(value: str, info: ValidationInfo) -> str:
    return check_text(value, info.field_name or "the value")


Text = Annotated[str, AfterValidator(_checked_text)]
"""A string without NUL or lone surrogates (for query parameters and single values)."""


class CheckedModel(BaseModel):
    """Base of every request body model: each field, however deeply nested in lists and mappings,
    is refused (422 at that field) when it holds NUL or a lone surrogate. Nested models check their
    own fields."""

    @field_validator("*", mode="before")
    @classmethod
    def _no_bad_string(cls, value: Any, info: ValidationInfo) -> Any:
        # Before: pydantic's own checks (lengths, literals) would otherwise answer a lone surrogate
        # with a vaguer "unable to parse raw data as a unicode string".
        return check_text(value, info.field_name or "value") if isinstance(value, str) else value

    @field_validator("*", mode="after")
    @classmethod
    def _no_bad_text_inside(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, BaseModel | str):
            return value
        for where, refusal in find_bad_text(value, info.field_name or "value"):
            raise PydanticCustomError("text_invalid", "{name} {refusal}", {"name": where, "refusal": refusal})
        return value


# ----- integers -----------------------------------------------------------------------------------
def bounded_int(literal: str) -> int:
    """A decimal integer literal as an int, or ±TOO_LARGE when it has more than MAX_INT_DIGITS
    significant digits (never parsing a long literal). `literal` must be a decimal integer."""
    digits = literal.lstrip("+-").lstrip("0")
    if len(digits) > MAX_INT_DIGITS:
        return -TOO_LARGE if literal.startswith("-") else TOO_LARGE
    return int(literal)


def _bounded_int_text(value: Any) -> Any:
    """An over-long decimal in text becomes ±TOO_LARGE; anything else is left to pydantic."""
    if isinstance(value, str):
        literal = value.strip().replace("_", "")
        if _DECIMAL.fullmatch(literal) and len(literal.lstrip("+-").lstrip("0")) > MAX_INT_DIGITS:
            return bounded_int(literal)
    return value


BoundedInt = Annotated[int, BeforeValidator(_bounded_int_text)]
"""An int read from text (query parameters) without parsing an over-long literal; give it bounds."""


_DECODER = json.JSONDecoder(parse_int=bounded_int)  # made once: json.loads(..., parse_int=) builds one per call


def loads_json(text: str | bytes) -> Any:
    """json.loads with integer literals read by `bounded_int`."""
    if isinstance(text, bytes | bytearray):
        text = text.decode(json.detect_encoding(text), "surrogatepass")  # as json.loads does
    if text.startswith("\ufeff"):
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    return _DECODER.decode(text)
