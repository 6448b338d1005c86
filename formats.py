"""Numbers as people read them: byte counts and lifetimes, for the pages
(template filters ``filesize`` and ``duration``) and the command line."""

from flask import Flask


def human_size(size: int) -> str:
    """A byte count as people read it: 512 B, 1.5 KiB, 3.2 MiB."""
    if size < 1024:
        return f"{size} B"
    value = size / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def format_size(size: int) -> str:
    """A byte count as people read it (1.5 GiB), with the exact count."""
    return f"{human_size(size)} ({size} bytes)" if size >= 1024 else f"{size} B"


def human_duration(seconds: int) -> str:
    """A lifetime as people say it: 1 hour, 7 days, 90 minutes."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds} seconds"


def init_app(app: Flask) -> None:
    """The template filters."""
    app.add_template_filter(human_size, "filesize")
    app.add_template_filter(human_duration, "duration")
