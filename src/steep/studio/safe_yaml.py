"""YAML the studio takes from a browser: no anchors or aliases, bounded size and depth.

PyYAML shares a node among every alias of an anchor, so a few hundred bytes of nested
aliases (a "billion laughs") become a tree of billions of nodes as soon as anything walks
it: the config merge, the dump shown back, the JSON response. Nobody needs an alias in the
few lines of extra config a form takes, so the studio refuses them outright, along with
text too long or nesting too deep to be a config (PyYAML composes recursively).
"""

from __future__ import annotations

from typing import Any

import yaml

from steep.errors import SteepError

MAX_YAML_CHARS = 64 << 10  # a studio form's extra YAML is a few lines; a config a few KB
MAX_YAML_DEPTH = 32  # a run config nests 3-4 levels


class StudioYAMLError(yaml.YAMLError, SteepError):
    """Studio YAML refused. ``str()`` is the problem alone, so a caller's own prefix
    ("extra YAML: not valid YAML: ...") reads once; ``message`` adds ``where``."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(problem)
        self.where, self.problem = where, problem

    @property
    def message(self) -> str:
        return f"{self.where}: {self.problem}"


class _StudioLoader(yaml.SafeLoader):
    """A SafeLoader that stops at the first anchor or alias and at deep nesting."""

    def __init__(self, stream: str, where: str) -> None:
        super().__init__(stream)
        self.where, self.depth = where, 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            mark = event.start_mark
            raise StudioYAMLError(
                self.where,
                f"line {mark.line + 1}: anchors and aliases (&{event.anchor}, "
                f"*{event.anchor}) are refused in the studio: write the value out",
            )
        self.depth += 1
        try:
            if self.depth > MAX_YAML_DEPTH:
                raise StudioYAMLError(
                    self.where,
                    f"line {event.start_mark.line + 1}: nested over {MAX_YAML_DEPTH} "
                    "levels deep, which no config needs",
                )
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def load_studio_yaml(text: str, where: str) -> Any:
    """The one document in ``text``; ``StudioYAMLError`` (a ``yaml.YAMLError``) if it holds
    an anchor or alias, nests deeper than ``MAX_YAML_DEPTH`` or is over ``MAX_YAML_CHARS``."""
    if len(text) > MAX_YAML_CHARS:
        raise StudioYAMLError(
            where, f"{len(text):,} characters is over the studio's {MAX_YAML_CHARS:,}"
        )
    loader = _StudioLoader(text, where)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
