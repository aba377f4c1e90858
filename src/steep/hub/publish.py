"""Taking a registered model out of the workspace: export to a folder, push to Hugging Face.

Both refresh the model card first, so what leaves carries the current lineage and eval.
They take the model's folder, not the ``Hub``: ``Hub.export_model`` and ``Hub.push_model``
look the model up and call them, so this module and the registry do not import each other.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from steep.artifacts.atomic import new_folder
from steep.hub.card import try_write_card
from steep.hub.schema import HubError

EXPORT_FORMATS = ("hf", "gguf")  # `steep models export --format`, the studio's picker


def new_export_dest(dest: Path) -> Path:
    """``dest`` resolved; refused in one line when it exists (an export never merges)."""
    dest = Path(dest).resolve()
    if dest.exists():
        raise HubError(f"export destination {dest} already exists: choose a new folder")
    return dest


def export_model(src: Path, name: str, home: Path, dest: Path) -> Path:
    """Copy model ``name``'s folder ``src`` to ``dest`` (built aside, then renamed: all or
    nothing); ``home`` is the workspace its card reads."""
    dest = new_export_dest(dest)
    try_write_card(src, name, home)
    with new_folder(dest) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".*"))
    return dest


def push_model(
    path: Path,
    name: str,
    home: Path,
    repo_id: str,
    private: bool = False,
    token: str | None = None,
) -> str:
    """Upload model ``name``'s folder ``path`` to a Hugging Face repo; returns the commit URL."""
    # deferred: huggingface_hub is heavy and only this command needs it
    from huggingface_hub import HfApi, constants

    try_write_card(path, name, home)
    endpoint = os.environ.get("HF_ENDPOINT") or constants.ENDPOINT
    if constants.HF_HUB_OFFLINE:
        raise HubError(
            f"cannot push {name!r} to {repo_id}: HF_HUB_OFFLINE is set (this machine is "
            "offline); unset it on a machine with network access"
        )
    api = HfApi(endpoint=endpoint, token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        commit = api.upload_folder(
            folder_path=str(path),
            repo_id=repo_id,
            repo_type="model",
            commit_message=f"steep: upload {name}",
            ignore_patterns=[".*"],
        )
    except Exception as exc:  # network, auth, HTTP: all end in one clear message
        raise HubError(
            f"cannot push {name!r} ({path}) to {repo_id} at {endpoint}: "
            f"{type(exc).__name__}: {exc}. Is the machine online and logged in "
            "(huggingface-cli login or HF_TOKEN)?"
        ) from None
    return str(getattr(commit, "commit_url", commit))
