"""The base of every config section: an unknown key is refused (a typo must never be
silently ignored), and a value set after parsing is validated as one parsed is."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)
