"""JSONPath-lite for feed mappings: ``a.b[0].c``, ``lines[*].sku``, ``$.header.id``, ``["odd key"]``.

A path is relative to the current record; a leading ``$`` starts at the payload's root (for
an envelope field shared by every record). ``[*]`` fans out and yields a list; ``[-1]`` is
the last element. Templates are strings with ``{path}`` placeholders: ``"wms-{receipt.id}"``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

MISSING: Final = object()

_SEGMENT = re.compile(r"""\.?([^.\[\]\s'"{}]+)|\[(\*|-?\d+)\]|\[(['"])(.*?)\3\]""")
_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")


class PathSyntaxError(ValueError):
    pass


@dataclass(frozen=True)
class Path:
    """A compiled path; ``text`` is what the mapping author wrote."""

    text: str
    root: bool
    segments: tuple[str | int, ...]  # "*" is the wildcard

    @property
    def multi(self) -> bool:
        return "*" in self.segments

    def get(self, record: Any, root: Any = None) -> Any:
        """The value at this path, a list when it fans out, else ``MISSING``."""
        current: list[Any] = [root if self.root and root is not None else record]
        for seg in self.segments:
            nxt: list[Any] = []
            for value in current:
                if seg == "*":
                    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
                        nxt.extend(value)
                    elif isinstance(value, Mapping):
                        nxt.extend(value.values())
                elif isinstance(seg, int):
                    if (isinstance(value, Sequence) and not isinstance(value, (str, bytes))
                            and -len(value) <= seg < len(value)):
                        nxt.append(value[seg])
                elif isinstance(value, Mapping) and seg in value:
                    nxt.append(value[seg])
            current = nxt
        if self.multi:
            return current
        return current[0] if current else MISSING


def compile_path(text: str) -> Path:
    """Parse a path, or raise ``PathSyntaxError`` saying where it went wrong."""
    raw = text.strip()
    root = raw.startswith("$")
    rest = raw[1:] if root else raw
    if not rest and not root:
        raise PathSyntaxError("empty path")
    segments: list[str | int] = []
    pos = 0
    while pos < len(rest):
        m = _SEGMENT.match(rest, pos)
        if m is None or m.end() == pos or (pos == 0 and not root and rest[0] == "."):
            raise PathSyntaxError(f"cannot read {text!r} at character {pos + int(root) + 1}")
        if m.group(1) is not None:
            segments.append(m.group(1))
        elif m.group(2) is not None:
            segments.append("*" if m.group(2) == "*" else int(m.group(2)))
        else:
            segments.append(m.group(4))
        pos = m.end()
    return Path(text, root, tuple(segments))


@dataclass(frozen=True)
class Template:
    """``"wms-{receipt.id}-{status}"``: every placeholder is a path that must resolve."""

    text: str
    parts: tuple[str | Path, ...]

    def render(self, record: Any, root: Any = None) -> tuple[str | None, list[str]]:
        """The rendered string, or None with the placeholders that had no value."""
        out: list[str] = []
        missing: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = part.get(record, root)
            if value is MISSING or value is None or value == "" or isinstance(value, (dict, list)):
                missing.append(part.text)
            else:
                out.append(str(value))
        return (None, missing) if missing else ("".join(out), [])


def compile_template(text: str) -> Template:
    parts: list[str | Path] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(text):
        if m.start() > pos:
            parts.append(text[pos:m.start()])
        parts.append(compile_path(m.group(1)))
        pos = m.end()
    if pos < len(text):
        parts.append(text[pos:])
    if not any(isinstance(p, Path) for p in parts):
        raise PathSyntaxError(f"template {text!r} has no {{path}} placeholder")
    return Template(text, tuple(parts))


def is_template(text: str) -> bool:
    return "{" in text
