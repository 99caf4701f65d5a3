"""Wildcard patterns over object names: parse a location, list only its literal prefix, match by glob.

Glob semantics (as in shells with ``globstar``):

- ``*`` any run of characters within one path segment (never ``/``);
- ``?`` exactly one character other than ``/``;
- ``[abc]`` / ``[!abc]`` one character from / not from the set;
- ``**`` as a whole segment: zero or more segments (``a/**/b`` matches
  ``a/b`` and ``a/x/y/b``; a trailing ``**`` matches everything below).

Listing uses only the literal prefix of the pattern (everything before the
first wildcard character), so ``s3://b/2024/**/*.txt`` lists ``2024/`` and
not the whole bucket.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote, urlsplit

from clinicflow.core.errors import ClinicflowError

WILDCARD_CHARS = "*?["


class PatternError(ClinicflowError, ValueError):
    """A pattern that cannot be used (the message names the pattern)."""


def literal_prefix(glob: str) -> str:
    """Everything before the first wildcard character: the listing prefix."""
    cut = min((i for i in (glob.find(c) for c in WILDCARD_CHARS) if i >= 0), default=len(glob))
    return glob[:cut]


def has_wildcards(glob: str) -> bool:
    return any(c in glob for c in WILDCARD_CHARS)


def _segment_regex(segment: str, pattern: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(segment):
        c = segment[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = segment.find("]", i + 2 if segment[i + 1 : i + 2] in ("!", "]") else i + 1)
            if end < 0:
                raise PatternError(f"pattern {pattern!r}: unclosed '['")
            body = segment[i + 1 : end]
            negate = body.startswith("!")
            body = body[1:] if negate else body
            body = body.replace("\\", "\\\\").replace("^", "\\^")
            out.append(f"[^/{body}]" if negate else f"[{body}]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


@lru_cache(maxsize=256)
def glob_regex(glob: str) -> re.Pattern[str]:
    """The compiled regex of a glob over ``/``-separated names."""
    segments = glob.split("/")
    parts: list[str] = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "**":
            # zero or more whole segments, each followed by '/' (or everything, when last)
            parts.append(".*" if last else "(?:[^/]+/)*")
        else:
            parts.append(_segment_regex(segment, glob) + ("" if last else "/"))
    return re.compile("".join(parts) + r"\Z", re.DOTALL)


def glob_match(glob: str, name: str) -> bool:
    """True when ``name`` (an object key, ``/``-separated) matches ``glob``."""
    return glob_regex(glob).match(name) is not None


@dataclass(frozen=True)
class Location:
    """A parsed pattern: where to list (``scheme``, ``bucket``) and what to match (``glob``).

    ``scheme`` is ``s3``, ``gs``, ``file`` or ``synthetic``. For ``file``,
    ``bucket`` is the deepest literal folder and ``glob`` is relative to it.
    """

    scheme: str
    bucket: str
    glob: str
    query: str = ""

    @property
    def prefix(self) -> str:
        return literal_prefix(self.glob)

    def uri(self, key: str) -> str:
        if self.scheme == "file":
            return (Path(self.bucket) / key).as_uri()
        return f"{self.scheme}://{self.bucket}/{key}"


def parse_location(pattern: str) -> Location:
    """Parse ``s3://bucket/a/**/*.txt``, ``gs://…``, ``synthetic://events?count=1000`` or a local path."""
    if not pattern or not pattern.strip():
        raise PatternError("pattern is empty")
    if "://" in pattern and not pattern.startswith("file://"):
        scheme, _, rest = pattern.partition("://")
        query = ""
        if scheme == "synthetic":
            rest, _, query = rest.partition("?")
        elif scheme not in ("s3", "gs"):
            raise PatternError(f"pattern {pattern!r}: scheme must be s3://, gs://, file://, synthetic:// or a path")
        bucket, _, glob = rest.partition("/")  # not urlsplit: '?' is a wildcard here, not a query
        if not bucket:
            raise PatternError(f"pattern {pattern!r}: no bucket name")
        if has_wildcards(bucket):
            raise PatternError(f"pattern {pattern!r}: wildcards in the bucket name are not supported")
        return Location(scheme, bucket, glob or ("" if scheme == "synthetic" else "**"), query)
    path = unquote(urlsplit(pattern).path) if pattern.startswith("file://") else pattern
    absolute = Path(path).expanduser()
    absolute = absolute if absolute.is_absolute() else Path.cwd() / absolute
    text = absolute.as_posix()
    prefix = literal_prefix(text)
    if prefix == text and Path(text).is_dir():
        return Location("file", text.rstrip("/") or "/", "**")
    root = prefix.rsplit("/", 1)[0] or "/"
    return Location("file", root, text[len(root) :].lstrip("/"))
