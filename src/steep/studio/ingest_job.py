"""A studio upload becomes a dataset in a process of its own, under limits.

Ingest reads whatever was uploaded: a 300 KB ``.gz`` can hold 300 MB, and a server that
decompresses it in its own process grows by as much (and dies with every job it watches).
So the studio runs ``steep data add`` as a child process, as it runs training, with an
address-space limit, and with ``--max-input-ratio`` and ``--max-input-mb`` set, so a file
that decompresses far past what text compresses to is skipped whole with its reason.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from steep.data.formats.template import JINJA_SUFFIXES
from steep.datahub.catalog import Catalog
from steep.errors import SteepError

MEMORY_BYTES = 2 << 30  # ingest streams; this is room for the interpreter, pyarrow, fastText
# each uploaded file may decompress to RATIO x its own size (at least 16 MB) and never past
# MAX_INPUT_MB; a file over it is skipped whole with its reason (steep.data.input_caps). The
# CLI caps nothing unless asked, as datatrove and HF datasets: a user's 20 GB .zst is data
RATIO = 100  # text compresses 3-10x (zstd -19 on logs, 20x); a bomb 1000x
MAX_INPUT_MB = 16 << 10
TIMEOUT_S = 4 * 3600

# the child limits itself before importing steep: preexec_fn is not safe in a threaded server
_LAUNCH = (
    "import resource, runpy, sys; "
    "limit = int(sys.argv.pop(1)); "
    "resource.setrlimit(resource.RLIMIT_AS, (limit, limit)); "
    "sys.argv[0] = 'steep'; "
    "runpy.run_module('steep', run_name='__main__')"
)


class IngestJobError(SteepError):
    """The upload could not become a dataset; the message is ``steep data add``'s own."""


def ingest_upload(
    home: Path,
    name: str,
    files: list[Path],
    *,
    text_field: str = "text",
    langid: bool = True,
    template: str | None = None,
    memory_bytes: int = MEMORY_BYTES,
    timeout_s: float = TIMEOUT_S,
) -> str:
    """``steep data add NAME FILES`` in a child process; returns the new version's ref."""
    cmd = [sys.executable, "-c", _LAUNCH, str(memory_bytes), "data", "add", name]
    cmd += [str(f) for f in files]
    cmd += ["--text-field", text_field, "--workers", "1", "--max-input-mb", str(MAX_INPUT_MB)]
    cmd += ["--max-input-ratio", str(RATIO)]
    if not langid:
        cmd.append("--no-langid")
    if template is not None:
        if template.lower().endswith(JINJA_SUFFIXES):  # a path: the server's files stay its own
            raise IngestJobError("the studio takes an inline template; a Jinja file is the CLI's")
        cmd.append(f"--template={template}")  # one argument, whatever it starts with
    env = {**os.environ, "STEEP_HOME": str(home), "TQDM_DISABLE": "1"}
    try:
        done = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        raise IngestJobError(f"ingest of {name!r} took over {timeout_s:g} s; stopped") from None
    if done.returncode != 0:
        if "MemoryError" in done.stderr or done.returncode < 0:
            raise IngestJobError(
                f"ingest of {name!r} needed more than {memory_bytes / 2**30:g} GiB of memory"
            )
        raise IngestJobError(command_error(done.stderr, done.returncode))
    return Catalog(home / "datasets").get(name).ref


def command_error(stderr: str, code: int) -> str:
    """What a failed ``steep data`` child said last (its one-line error, or a traceback's
    last line), without the command's prefix; a progress bar's redraws are lines too."""
    lines = [x.strip() for x in re.split(r"[\r\n]", stderr) if x.strip()]
    if code < 0:
        return f"stopped by signal {-code}"
    last = lines[-1] if lines else f"exited with code {code}"
    return last.removeprefix("steep data: error: ")
