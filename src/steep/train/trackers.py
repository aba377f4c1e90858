"""Where a run's metrics go beside metrics.jsonl: TensorBoard (always, in the run folder),
Weights & Biases and MLflow (optional). One path for all three: ``flat_metrics`` turns a
record into scalar names and values (``train/loss``, ``tokens/<source>``,
``eval/<set>/loss``, ``eval/<set>/rel_change`` as a fraction), and each backend writes
those.

``track.wandb`` / ``track.mlflow`` in the run config turn W&B and MLflow on (``pip install
'steep[wandb]'``, ``'steep[mlflow]'``). Each gets every train and eval record, the resolved
config at the start, and at the end report.md, plots/, config.yaml and the model's
lineage (model/steep.json). metrics.jsonl stays the contract: a tracker is a copy.

Only rank 0 reports (``steep.train.track.Tracker`` is built there alone). A tracker that
fails (network, credentials, a full disk) never stops training: its first exception
becomes one warning line and the tracker turns itself off for the rest of the run.

A resume continues the same tracker runs: their ids are kept in ``run_dir/trackers.json``
and passed back (``wandb.init(id=, resume="allow")``, MLflow's ``run_id``). The records a
killed run had already sent (those after its checkpoint) are not sent twice: MLflow would
keep both values of a re-logged step and W&B drops a step lower than its last one. MLflow
is asked which steps it holds (its writes are synchronous); W&B is given the records the
killed run wrote to metrics.jsonl after its checkpoint (what W&B had not yet flushed when
a run was SIGKILLed is missing from W&B: it writes asynchronously; MLflow writes at once).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from steep.config.flat import dotted
from steep.config.tracking import MlflowSection, TrackSection, WandbSection
from steep.errors import ConfigError
from steep.workspace import CONFIG_FILE, LINEAGE_FILE, MODEL_DIR, REPORT_FILE, TENSORBOARD_DIR

STATE_FILE = "trackers.json"  # the tracker runs' ids, so a resume continues them
PLOTS_DIR = "plots"  # = steep.train.report.PLOTS_DIR (kept here: report imports matplotlib)
_MODULES = {"wandb": "wandb", "mlflow": "mlflow"}  # config key -> module (and extra)
_TRAIN_KEYS = (
    "loss", "lr", "grad_norm", "tokens", "tokens_per_s", "tokens_per_s_per_device", "mfu",
    "peak_mem_gib",
)  # fmt: skip


def check_trackers(track: TrackSection) -> None:
    """Refuse, before any work, a tracker whose library is not installed."""
    for key, module in _MODULES.items():
        if getattr(track, key) is not None and importlib.util.find_spec(module) is None:
            raise ConfigError(
                f"track.{key} needs {module}: pip install 'steep[{key}]' (or pip install {module})"
            )
    store = mlflow_store(track.mlflow) if track.mlflow is not None else None
    if store and store.startswith("sqlite:") and importlib.util.find_spec("sqlalchemy") is None:
        raise ConfigError(
            f"track.mlflow.tracking_uri {store}: a sqlite: store needs the full mlflow "
            "(pip install mlflow); the mlflow extra is mlflow-skinny, for file: stores and "
            "tracking servers"
        )


def mlflow_store(cfg: MlflowSection) -> str | None:
    """The store MLflow opens: ``track.mlflow.tracking_uri``, else $MLFLOW_TRACKING_URI;
    None: MLflow's own default (``sqlite:///mlflow.db`` in the working folder, MLflow 3)."""
    return cfg.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or None


def file_store_uri(store: str | None) -> str | None:
    """The ``file:`` URI of a file store (a ``file:`` URI or a plain path); None for a
    server, a database or MLflow's default."""
    if not store:
        return None
    scheme = urlparse(store).scheme
    if scheme == "file":
        return store
    if scheme or store.startswith("databricks"):
        return None
    return Path(store).expanduser().resolve().as_uri()


def file_store_note(uri: str) -> str:
    """The run's line about a file store: MLflow 3 opens one only when told to."""
    return (
        f"MLflow: runs go to the file store {uri}, which MLflow 3 opens only with "
        "MLFLOW_ALLOW_FILE_STORE=true (steep sets it for its own runs). To read them: "
        f"MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri {uri} "
        "(the UI needs the full mlflow: pip install mlflow), or set it before MlflowClient"
    )


def flat_metrics(record: dict[str, Any]) -> dict[str, float]:
    """A metrics.jsonl record as ``name -> number``: what every backend writes."""
    out: dict[str, float] = {}
    if record["kind"] == "train":
        for key in _TRAIN_KEYS:
            if isinstance(record.get(key), (int, float)):
                out[f"train/{key}"] = float(record[key])
        for name, n in record.get("tokens_by_source", {}).items():
            out[f"tokens/{name}"] = float(n)
    elif record["kind"] == "eval":
        for name, m in record["sets"].items():
            for key in ("loss", "ppl", "rel_change"):
                if m.get(key) is not None:  # rel_change: None when the baseline cannot divide
                    out[f"eval/{name}/{key}"] = float(m[key])
    return out


def result_files(run_dir: Path) -> Iterator[tuple[Path, str]]:
    """(file, folder inside the tracker run) of what a finished run uploads."""
    for path, folder in [(run_dir / REPORT_FILE, ""), (run_dir / CONFIG_FILE, "")]:
        if path.is_file():
            yield path, folder
    for path in sorted((run_dir / PLOTS_DIR).glob("*")):
        if path.is_file():
            yield path, PLOTS_DIR
    if (run_dir / MODEL_DIR / LINEAGE_FILE).is_file():
        yield run_dir / MODEL_DIR / LINEAGE_FILE, MODEL_DIR


def _params(config: dict[str, Any]) -> dict[str, str]:
    """The config as MLflow params: dotted keys, JSON values (a list whole)."""
    return {k: json.dumps(v)[:6000] for k, v in dotted(config).items()}  # MLflow's longest


class _Backend:
    name = ""

    def __init__(self) -> None:
        self.live = True

    def guard(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(...)``, or None and one warning (then off) when it raises anything."""
        if not self.live:
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # a tracker never stops training, whatever it raises
            self.live = False
            why = (str(exc).strip().splitlines() or [""])[0][:300]
            print(
                f"warning: {self.name} failed to {what} ({type(exc).__name__}: {why}); "
                f"{self.name} is off for the rest of this run, metrics.jsonl is complete",
                file=sys.stderr,
            )
            return None

    def flush(self) -> None:
        """Make what was logged readable now (a remote tracker sends as it goes)."""


class TensorBoardBackend(_Backend):
    """Event files in ``run_dir/tensorboard``; a resume purges the steps after its
    checkpoint, so those records are written again (``resent`` does not apply)."""

    name = "TensorBoard"

    def __init__(self, run_dir: Path, resume_step: int | None):
        super().__init__()
        self.id = None  # nothing to continue: the folder is the run's
        self.writer = self.guard("start", self._start, run_dir, resume_step)

    @staticmethod
    def _start(run_dir: Path, resume_step: int | None) -> Any:
        # deferred: torch's TensorBoard writer (and tensorboard) load only when a run logs
        from torch.utils.tensorboard import SummaryWriter

        purge = resume_step + 1 if resume_step is not None else None
        return SummaryWriter(str(run_dir / TENSORBOARD_DIR), purge_step=purge)

    def log(self, metrics: dict[str, float], step: int, kind: str, resent: bool) -> None:
        def write() -> None:
            for key, value in metrics.items():
                self.writer.add_scalar(key, value, step)

        self.guard("log", write)

    def flush(self) -> None:
        self.guard("flush", self.writer.flush)

    def upload(self, files: list[tuple[Path, str]]) -> None:
        pass  # the run folder holds report.md and plots/ beside tensorboard/

    def close(self) -> None:
        self.guard("finish", self.writer.close)


class WandbBackend(_Backend):
    name = "W&B"

    def __init__(self, cfg: WandbSection, run_dir: Path, config: dict, run_id: str | None):
        super().__init__()
        self.run = self.guard("start", self._start, cfg, run_dir, config, run_id)
        self.id = getattr(self.run, "id", None)

    @staticmethod
    def _start(cfg: WandbSection, run_dir: Path, config: dict, run_id: str | None) -> Any:
        import wandb  # optional, and slow to import: only when track.wandb is set

        return wandb.init(
            project=cfg.project,
            entity=cfg.entity,
            name=cfg.name or run_dir.name,
            tags=cfg.tags or None,
            mode=cfg.mode,
            dir=str(run_dir),  # run_dir/wandb/: an offline run stays with its steep run
            id=run_id,  # None: W&B makes one, kept in trackers.json
            resume="allow",
            config=config,
            settings=wandb.Settings(console="off"),  # steep's own output stays steep's
        )

    def log(self, metrics: dict[str, float], step: int, kind: str, resent: bool) -> None:
        if not resent:  # the killed run sent it (metrics.jsonl says so)
            self.guard("log", self.run.log, metrics, step=step)

    def upload(self, files: list[tuple[Path, str]]) -> None:
        def save() -> None:
            root = Path(self.run.dir)  # the run's files/ folder: uploaded by W&B (or sync)
            for path, folder in files:
                if path.name == CONFIG_FILE:  # W&B has it from init; its files/ has its own
                    continue
                dest = root / folder / path.name
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, dest)
                self.run.save(str(dest), base_path=str(root), policy="now")

        self.guard("upload the results", save)

    def close(self) -> None:
        self.guard("finish", self.run.finish)


class MlflowBackend(_Backend):
    name = "MLflow"

    def __init__(self, cfg: MlflowSection, run_dir: Path, config: dict, run_id: str | None):
        super().__init__()
        self.held: dict[str, int] = {}
        uri = cfg.tracking_uri
        file_store = file_store_uri(mlflow_store(cfg))
        if file_store:  # a file store was asked for by name: MLflow 3 refuses it unless opted in
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = self.guard("connect", self._client, uri)
        self.id = self.guard("start", self._start, cfg, run_dir, config, run_id)
        if file_store and self.id is not None:
            print(file_store_note(file_store), flush=True)

    @staticmethod
    def _client(uri: str | None) -> Any:
        from mlflow.tracking import MlflowClient  # optional, and slow: only with track.mlflow

        return MlflowClient(tracking_uri=uri)

    def _start(self, cfg: MlflowSection, run_dir: Path, config: dict, run_id: str | None) -> str:
        if run_id is not None:  # a resume: the same run again, marked running
            self.client.update_run(run_id, status="RUNNING")
            self.held = self._held(run_id)
            return run_id
        found = self.client.get_experiment_by_name(cfg.experiment)
        exp = found.experiment_id if found else self.client.create_experiment(cfg.experiment)
        run = self.client.create_run(
            exp, run_name=cfg.run_name or run_dir.name, tags={"steep.run_dir": str(run_dir)}
        )
        from mlflow.entities import Param  # optional: as above

        params = [Param(k, v) for k, v in _params(config).items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params a batch
            self.client.log_batch(run.info.run_id, params=params[i : i + 100])
        return run.info.run_id

    def _held(self, run_id: str) -> dict[str, int]:
        """The last train and eval step this run holds, by kind."""
        held = {}
        keys = [k for k in self.client.get_run(run_id).data.metrics if k.endswith("/loss")]
        for key in keys:
            kind = "train" if key.startswith("train/") else "eval"
            steps = [m.step for m in self.client.get_metric_history(run_id, key)]
            held[kind] = max([held.get(kind, -1), *steps])
        return held

    def log(self, metrics: dict[str, float], step: int, kind: str, resent: bool) -> None:
        if step <= self.held.get(kind, -1):  # a resume: the killed run sent it
            return

        def send() -> None:
            from mlflow.entities import Metric  # optional: imported once, then cached

            ms = int(time.time() * 1000)
            self.client.log_batch(
                self.id, metrics=[Metric(k, v, ms, step) for k, v in metrics.items()]
            )

        self.guard("log", send)

    def upload(self, files: list[tuple[Path, str]]) -> None:
        def save() -> None:
            for path, folder in files:
                self.client.log_artifact(self.id, str(path), folder or None)

        self.guard("upload the results", save)

    def close(self) -> None:
        self.guard("finish", self.client.set_terminated, self.id, "FINISHED")


_BACKENDS: dict[str, type[WandbBackend] | type[MlflowBackend]] = {
    "wandb": WandbBackend,
    "mlflow": MlflowBackend,
}


def open_trackers(
    track: TrackSection, run_dir: Path, config: dict, resume: bool
) -> list[WandbBackend | MlflowBackend]:
    """The enabled trackers, started (a resume continues the ids in trackers.json)."""
    check_trackers(track)
    state_path = run_dir / STATE_FILE
    state: dict[str, Any] = {}
    if resume and state_path.is_file():
        try:
            state = json.loads(state_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            print(f"warning: {state_path} unreadable ({exc}); new tracker runs", file=sys.stderr)
    backends = []
    for key, backend in _BACKENDS.items():
        cfg = getattr(track, key)
        if cfg is None:
            continue
        made = backend(cfg, run_dir, config, state.get(key, {}).get("id"))
        if made.live and made.id is not None:
            backends.append(made)
            state[key] = {"id": made.id}
    if backends:
        try:
            state_path.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:  # only a resume needs it: say so, train on
            print(f"warning: cannot write {state_path} ({exc}); a resume starts new tracker runs",
                  file=sys.stderr)  # fmt: skip
    return backends
