"""``python -m steep.studio.wrap JOB_DIR -- CMD...``: run one job and record how it ended.

The studio does not wait on its training processes itself: a studio restart would lose
the exit status. This wrapper is the job's process-group leader; it writes its pid,
streams the command's output to ``log.txt`` and writes ``exit.json`` when the command
ends. A job with a dead wrapper and no ``exit.json`` died (killed, OOM, power loss).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from steep.artifacts.atomic import write_text


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m steep.studio.wrap JOB_DIR -- CMD...", file=sys.stderr)
        return 2
    job_dir, cmd = Path(argv[0]), argv[2:]
    write_text(job_dir / "pid", str(os.getpid()))
    # Cancel sends SIGTERM to the whole group: the command stops, the wrapper stays to record it.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with open(job_dir / "log.txt", "ab", buffering=0) as log:
        log.write(f"$ {' '.join(cmd)}\n".encode())
        try:
            proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL),
            )
            code = proc.wait()
        except OSError as exc:
            log.write(f"could not start the job: {exc}\n".encode())
            code = 127
    write_text(job_dir / "exit.json", json.dumps({"code": code, "time": time.time()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
