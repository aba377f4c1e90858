"""YAML for files people write (run configs, recipes): a key written twice is an error.

PyYAML keeps the last of two equal keys without a word, so a config that sets
``train.steps`` twice trains with whichever came last. This loader refuses it, naming the
key and both lines, and reports syntax errors with their line.
"""

from __future__ import annotations

from typing import Any

import yaml

from steep.errors import ConfigError


class _StrictLoader(yaml.SafeLoader):
    pass


def _mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"key {key!r} appears twice (lines {seen[key]} and {line}): keep one",
                key_node.start_mark,
            )
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_yaml(text: str, where: str) -> Any:
    """The document in ``text``; ``ConfigError`` names ``where`` and the line."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        if "appears twice" in str(problem):
            raise ConfigError(f"{where}: {problem}") from None
        raise ConfigError(f"{where}{line}: not valid YAML: {exc}") from None
