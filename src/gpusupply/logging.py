"""Process logging: text or JSON lines, a request id on every record, and no secrets.

`configure_logging(settings)` installs one stderr handler on the root logger (used by `serve` and
`worker`). Two filters sit on that handler, so every record that reaches it passes them, whichever
library logged it:

- `RequestContextFilter` stamps `record.request_id` from the context variable the HTTP middleware
  sets (`api/observability.py`), so a service or vendor log line names the request it served.
- `RedactingFilter` removes secrets from the message, the `extra` fields and the formatted
  traceback: configured secret values (vendor API keys, the secret key; anyone may add more with
  `register_secret`), `Authorization` values, anything shaped like our API tokens (`gsk_...`) and
  `api_key=`/`token=`-style parameters.

`--log-format json` / `GPUSUPPLY_LOG_FORMAT=json` prints one JSON object per line: `time` (UTC,
ISO 8601), `level`, `logger`, `message`, `request_id`, then every `extra` field, and `exc_info`
(the traceback) when there is one.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any

from gpusupply.settings import VENDORS, Settings

LOG_FORMATS = ("text", "json")
REDACTED = "[REDACTED]"
MIN_SECRET_LENGTH = 6  # shorter values would redact ordinary words

# The id of the HTTP request being served in this task (None outside a request).
request_id_var: ContextVar[str | None] = ContextVar("gpusupply_request_id", default=None)

# Libraries whose per-request chatter drowns what matters (and whose request lines may carry
# query-string credentials); they log at WARNING and above only.
NOISY_LOGGERS = ("httpx", "httpcore", "alembic")

# Attributes every LogRecord has; anything else on a record came from `extra=`.
# uvicorn's `color_message` is its message again with terminal colours: noise in a log line.
_STANDARD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "request_id", "color_message"}

_SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    # Our API tokens (a display prefix such as gsk_AbCd1234 is shorter and stays readable).
    (re.compile(r"gsk_[A-Za-z0-9_-]{20,}"), "gsk_" + REDACTED),
    # Authorization headers in any spelling: "Authorization: Bearer x", {"authorization": "Key x"}.
    (re.compile(r"(?i)(\bauthorization[\"']?\s*[:=]\s*[\"']?)(?:(bearer|key|basic|token)\s+)?[^\s\"',;}]+"),
     lambda m: m.group(1) + (f"{m.group(2)} " if m.group(2) else "") + REDACTED),
    # Header tuples as ASGI and httpx print them: (b'authorization', b'Bearer x').
    (re.compile(r"(?i)(b?[\"']authorization[\"'],\s*b?[\"'])[^\"']*"), r"\1" + REDACTED),
    # Credentials in query strings and form bodies: ?api_key=x&..., token=x.
    (re.compile(r"(?i)\b((?:api[_-]?key|access[_-]?token|token|secret|password)=)[^&\s\"']+"), r"\1" + REDACTED),
    # Credentials as JSON/dict fields: "api_key": "x".
    (re.compile(r"(?i)([\"'](?:api[_-]?key|access[_-]?token|secret|password|token)[\"']\s*:\s*[\"'])[^\"']+"),
     r"\1" + REDACTED),
)


class SecretRegistry:
    """Exact secret values to remove from logs (vendor keys, secret key, webhook secrets...)."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()
        self._ordered: tuple[str, ...] = ()

    def add(self, value: str | None) -> None:
        if not value or len(value) < MIN_SECRET_LENGTH:
            return
        with self._lock:
            self._values.add(value)
            # Longest first, so a secret that contains another is removed whole.
            self._ordered = tuple(sorted(self._values, key=len, reverse=True))

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self._ordered = ()

    def __iter__(self) -> Any:
        return iter(self._ordered)


SECRETS = SecretRegistry()


def register_secret(value: str | None) -> None:
    """Never log this value (e.g. a webhook secret once it is created or decrypted)."""
    SECRETS.add(value)


def redact(text: str, secrets: Iterable[str] | None = None) -> str:
    """`text` with every known secret and secret-shaped value replaced by [REDACTED]."""
    for secret in SECRETS if secrets is None else secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_value(value: Any) -> Any:
    """Strings redacted; dicts, lists and tuples redacted inside; anything else as it is."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: redact_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_value(item) for item in value)
    return value


def record_extras(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a record got through `extra=`."""
    return {key: value for key, value in record.__dict__.items() if key not in _STANDARD_ATTRIBUTES}


class RequestContextFilter(logging.Filter):
    """Stamps the current request id on every record (an explicit `extra={"request_id": ...}` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        return True


class RedactingFilter(logging.Filter):
    """Removes secrets from a record before any formatter sees it (message, extras, traceback)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        for key, value in record_extras(record).items():
            setattr(record, key, redact_value(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
            # The text is what gets printed; keeping exc_info would let a formatter re-render it.
            record.exc_info = None
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, extras, exc_info."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        for key, value in record_extras(record).items():
            entry.setdefault(key, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = record.stack_info
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger [request id]: message key=value ...` for people reading a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(request_tag)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None)
        record.request_tag = f" [{request_id}]" if request_id else ""
        extras = {k: v for k, v in record_extras(record).items() if k != "request_tag"}
        line = super().format(record)
        delattr(record, "request_tag")
        if extras:
            fields = " ".join(f"{key}={value}" for key, value in extras.items())
            head, newline, rest = line.partition("\n")
            line = f"{head} {fields}{newline}{rest}"
        return line


def configured_secrets(settings: Settings) -> list[str]:
    """Secret values the settings hold: vendor API keys and the secret key."""
    values = [settings.vendor_key(vendor) for vendor in VENDORS] + [settings.secret_key]
    return [value.get_secret_value() for value in values if value is not None and value.get_secret_value()]


def build_handler(log_format: str, stream: IO[str] | None = None) -> logging.Handler:
    if log_format not in LOG_FORMATS:
        raise ValueError(f"unknown log format {log_format!r}; one of: {', '.join(LOG_FORMATS)}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(RequestContextFilter())
    handler.addFilter(RedactingFilter())
    return handler


def configure_logging(settings: Settings, *, stream: IO[str] | None = None) -> logging.Handler:
    """Route every log record through one handler (text or JSON) with the request id and redaction.

    Replaces the root logger's handlers, so calling it again (tests, a restarted command) does not
    double the output. Raises ValueError for an unknown format or level.
    """
    log_format = settings.log_format.strip().lower()
    level = logging.getLevelName(settings.log_level.strip().upper())
    if not isinstance(level, int):
        raise ValueError(f"unknown log level {settings.log_level!r}; one of: debug, info, warning, error")
    handler = build_handler(log_format, stream)
    for secret in configured_secrets(settings):
        register_secret(secret)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    return handler
