"""Logging set-up: text for people, or JSON (one object per line) for log collectors.

A JSON line holds `time`, `level`, `logger`, `message`, `exc_info` when there is a
traceback, and every field passed in `extra=` (such as `workflow_id`). The text format
shows the workflow ID after the message. Nothing here logs payloads or call metadata: only
what the coordinator's log calls pass in.
"""

from __future__ import annotations

import logging

from pythonjsonlogger.json import JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Fields of `extra` the text format shows; the JSON format shows every extra field.
_TEXT_CONTEXT = ("workflow_id",)


class _TextFormatter(logging.Formatter):
    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        for name in _TEXT_CONTEXT:
            value = getattr(record, name, None)
            if value is not None:
                line += f" {name}={value}"
        return line


def formatter(fmt: str) -> logging.Formatter:
    """The formatter of log format `fmt`: "text" or "json"."""
    if fmt == "json":
        return JsonFormatter(
            ["levelname", "name", "message"],
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="time",
        )
    if fmt == "text":
        return _TextFormatter(TEXT_FORMAT)
    raise ValueError(f"unknown log format {fmt!r}")


def configure(level: str, fmt: str) -> None:
    """Send every log record at `level` or above to stderr in format `fmt` ("text"/"json")."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(fmt))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # Python warnings go through logging too, so a JSON log stays all JSON.
    logging.captureWarnings(True)
