"""The run config: its schema, how it is read (YAML + ``--set``), and the preflight check."""

from steep.config.load import apply_overrides, dump_config, load_config, parse_config, resolve_paths
from steep.config.schema import (
    CheckpointSection,
    DataSection,
    EvalSection,
    ModelSection,
    Role,
    RunConfig,
    RunSection,
    SourceSection,
    TrainSection,
    effective_weights,
    eval_set_roles,
    source_role,
)
from steep.errors import ConfigError

__all__ = [
    "CheckpointSection",
    "ConfigError",
    "DataSection",
    "EvalSection",
    "ModelSection",
    "Role",
    "RunConfig",
    "RunSection",
    "SourceSection",
    "TrainSection",
    "apply_overrides",
    "dump_config",
    "effective_weights",
    "eval_set_roles",
    "load_config",
    "parse_config",
    "resolve_paths",
    "source_role",
]
