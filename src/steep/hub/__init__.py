"""Model Hub: one SQLite registry of datasets, runs and models, with lineage and model cards.

The folders stay the contract (dataset manifests, run directories, model directories with
their lineage file); ``$STEEP_HOME/hub.sqlite`` is the index over them that the CLI and the
studio share. ``Hub.sync()`` rebuilds whatever is missing from the folders, so the registry
can be deleted and recovered, and a run or dataset written by any process shows up.

Lineage edges::

    model --made by--> run --started from--> base model (a registered model when the base
                        |                     path lies inside one: that makes the run a
                        |                     dependent of it, and ``rm`` refuses)
                        +--read--> dataset versions (name@N, the catalog's spelling), with weights
    model <--attached-- eval report (MODEL/eval/eval.json, summary in the lineage's ``eval``)

Modules: ``schema`` (every table of hub.sqlite, the studio's jobs included, and the
migrations), ``scan`` (the folder readers sync uses), ``registry`` (``Hub``: sync and
queries), ``card`` (model cards), ``recorder`` (what training and eval tell the hub),
``publish`` (export and push).

Why sqlite3 from the standard library: one file, safe for several processes at once in WAL
mode, nothing to run. An ORM (SQLAlchemy) was considered and is not worth a dependency for
a handful of tables.
"""

from __future__ import annotations

from steep.hub.card import (
    CARD_MARK,
    listed_change,
    render_model_card,
    training_change,
    write_model_card,
)
from steep.hub.recorder import attach_eval_report, record_run
from steep.hub.registry import Hub
from steep.hub.schema import MIGRATIONS, SCHEMA_VERSION, STATUSES, HubError

__all__ = [
    "CARD_MARK",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "STATUSES",
    "Hub",
    "HubError",
    "attach_eval_report",
    "listed_change",
    "record_run",
    "render_model_card",
    "training_change",
    "write_model_card",
]
