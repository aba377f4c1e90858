"""The ``track`` section: trackers beside metrics.jsonl and TensorBoard
(``steep.train.trackers``), each optional."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from steep.config.strict import Strict


class WandbSection(Strict):
    project: str | None = None
    entity: str | None = None
    name: str | None = Field(None, description="the W&B run's name; default the run folder's")
    tags: list[str] = Field(default_factory=list)
    mode: Literal["online", "offline", "disabled"] | None = Field(
        None, description="default: WANDB_MODE, else online"
    )


class MlflowSection(Strict):
    tracking_uri: str | None = Field(
        None, description="file:/path, http(s)://server, ...; default MLFLOW_TRACKING_URI"
    )
    experiment: str = "steep"
    run_name: str | None = Field(None, description="default: the run folder's name")


class TrackSection(Strict):
    """Trackers beside metrics.jsonl and TensorBoard (steep.train.trackers); each optional."""

    wandb: WandbSection | None = None
    mlflow: MlflowSection | None = None
