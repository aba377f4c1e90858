"""Reading a JSON contract into its pydantic model, with an error that names file and field."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from steep.errors import SteepError

M = TypeVar("M", bound=BaseModel)


def validate(model: type[M], data: Any, where: str, error: type[SteepError]) -> M:
    """``model`` from ``data``; ``error("FILE: field.path: what is wrong")`` otherwise."""
    if not isinstance(data, dict):
        raise error(f"{where}: not a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise error(f"{where}: {field}: {err['msg']}") from None
