"""Structured records as text, through a template (e-Llama's "serialized listings").

Three kinds: an inline template, ``"Title: {title}\\nBrand: {brand}\\n{description}"``
(Python format fields; ``\\n`` and ``\\t`` written in a shell mean a newline and a tab),
a Jinja file (``.j2``, ``.jinja``, ``.jinja2``) for anything longer, run sandboxed, or a
named one that ships with steep (``listing``, ``review``, ``qa``: ``templates/*.j2``).

The missing-field rule: a record without a field the template uses (absent, null or an
empty string, as an empty CSV cell, for an inline template; undefined, for a Jinja one) is
skipped with the field's name as its reason. A Jinja template makes a field optional itself
(``{{ brand | default('') }}``, ``{% if brand is defined %}``) and may list the fields that
must not be empty on a ``{#- required: title, text -#}`` line. A template that does not
parse is one line, before any work.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steep.errors import UsageError

JINJA_SUFFIXES = (".j2", ".jinja", ".jinja2")
_REQUIRED = re.compile(r"\{#-?\s*required:\s*([\w ,]+?)\s*-?#\}")


class MissingField(Exception):
    """The record lacks a field the template uses; the message is the field's name."""


@dataclass(frozen=True)
class RecordTemplate:
    source: str  # the template's text
    kind: str  # "format" or "jinja"
    origin: str  # the file it came from, or "inline"

    @property
    def fields(self) -> tuple[str, ...]:
        """The top-level field names the template reads (the columns a reader loads)."""
        if self.kind == "format":
            return _format_fields(self.source)
        from jinja2 import meta  # deferred: Jinja only for a Jinja template

        return tuple(sorted(meta.find_undeclared_variables(_jinja_env().parse(self.source))))

    @property
    def required(self) -> tuple[str, ...]:
        """Fields a record must have non-empty: all of an inline template's; a Jinja
        template's from its ``{#- required: a, b -#}`` line, if it has one."""
        if self.kind == "format":
            return self.fields
        found = _REQUIRED.search(self.source)
        return tuple(f.strip() for f in found.group(1).split(",")) if found else ()

    def render(self, record: dict[str, Any]) -> str:
        """The record's text; ``MissingField`` under the rule above."""
        for name in self.required:
            if record.get(name) in (None, ""):
                raise MissingField(name)
        if self.kind == "format":
            return self.source.format_map(record)
        return _render_jinja(self.source, record)

    def describe(self) -> dict[str, str]:
        """What the manifest records, so a version says how its text was made."""
        return {"kind": self.kind, "origin": self.origin, "source": self.source}


PACKAGED = Path(__file__).with_name("templates")


def packaged_templates() -> list[str]:
    """The names ``--template`` takes for the templates that ship with steep."""
    return sorted(p.stem for p in PACKAGED.glob("*.j2"))


def load_template(value: str) -> RecordTemplate:
    """``--template``'s value: a packaged template's name, a Jinja file's path, or an inline
    template; a template that does not parse is a ``UsageError`` naming where."""
    if value in packaged_templates():
        source = (PACKAGED / f"{value}.j2").read_text(encoding="utf-8")
        _check_jinja(source, value)
        return RecordTemplate(source, "jinja", f"packaged:{value}")
    path = Path(value).expanduser()
    if value.lower().endswith(JINJA_SUFFIXES):
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--template {value}: cannot read the Jinja file ({exc})") from None
        _check_jinja(source, value)
        return RecordTemplate(source, "jinja", str(path))
    source = value.replace("\\n", "\n").replace("\\t", "\t")
    try:
        fields = _format_fields(source)
    except ValueError as exc:
        raise UsageError(f"--template {value!r}: {exc}") from None
    if not fields:
        raise UsageError(
            f"--template {value!r} names no field: write fields as {{title}}, or name a "
            f"packaged template ({', '.join(packaged_templates())})"
        )
    return RecordTemplate(source, "format", "inline")


def _format_fields(source: str) -> tuple[str, ...]:
    names: list[str] = []
    for _, name, _, _ in string.Formatter().parse(source):
        if name is None:
            continue
        root = name.split(".")[0].split("[")[0]
        if not root or root.isdigit():
            raise ValueError(f"field {{{name}}} has no name: write it as {{title}}")
        if root not in names:
            names.append(root)
    return tuple(names)


def _jinja_env() -> Any:
    from jinja2 import StrictUndefined  # deferred: Jinja only for a Jinja template
    from jinja2.sandbox import SandboxedEnvironment

    return SandboxedEnvironment(
        undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False
    )


def _check_jinja(source: str, where: str) -> None:
    try:
        from jinja2 import TemplateSyntaxError  # deferred: Jinja only for a Jinja template
    except ImportError:
        raise UsageError(
            f"--template {where}: a Jinja template needs jinja2 (pip install jinja2)"
        ) from None
    try:
        _jinja_env().parse(source)
    except TemplateSyntaxError as exc:
        raise UsageError(f"--template {where}:{exc.lineno}: {exc.message}") from None


def _render_jinja(source: str, record: dict[str, Any]) -> str:
    from jinja2 import UndefinedError  # deferred: Jinja only for a Jinja template

    try:
        return _compiled(source).render(record)
    except UndefinedError as exc:
        raise MissingField(
            str(exc.message).split("'")[1] if "'" in str(exc) else str(exc)
        ) from None


_CACHE: dict[str, Any] = {}


def _compiled(source: str) -> Any:
    if source not in _CACHE:
        _CACHE[source] = _jinja_env().from_string(source)
    return _CACHE[source]
