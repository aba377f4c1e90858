"""``steep studio``: serve the web app with uvicorn on this machine (127.0.0.1 by default)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from steep.cli.launch import add_slurm_options, slurm_options
from steep.config import ConfigError
from steep.errors import UsageError
from steep.workspace import steep_home

DEFAULT_PORT = 8700


def gpu_count() -> int:
    """Visible CUDA devices, without making CUDA hold the GPUs from the studio process."""
    try:
        # deferred: keeps `steep --help` light (no torch until a command runs)
        from steep.launch.torchrun import visible_gpus

        return visible_gpus()
    except Exception:  # no torch CUDA build, driver trouble: treat as CPU only
        return 0


def resolve_token(args: argparse.Namespace) -> str | None:
    """The access token: ``--token-file``, else ``--token`` (it shows in ``ps``: warned),
    else ``$STEEP_STUDIO_TOKEN``; None for none. Its strength is checked by ``check_bind``."""
    if args.token_file and args.token:
        raise UsageError("give the token once: --token-file PATH or --token, not both")
    if args.token_file:
        path = Path(args.token_file)
        try:
            text = path.read_text(encoding="utf-8")
            mode = path.stat().st_mode
        except OSError as exc:
            raise UsageError(f"--token-file {path}: cannot read it ({exc.strerror})") from None
        if mode & 0o077:
            print(
                f"steep studio: warning: other users can read {path}: chmod 600 {path}",
                file=sys.stderr,
            )
        if not text.strip():
            raise UsageError(f"--token-file {path} is empty: put the token in it")
        return text.strip()
    if args.token:
        print(
            "steep studio: warning: --token shows in `ps` to every user of this machine; "
            "use --token-file PATH or STEEP_STUDIO_TOKEN",
            file=sys.stderr,
        )
        return args.token
    return os.environ.get("STEEP_STUDIO_TOKEN") or None


def cmd_studio(args: argparse.Namespace) -> int:
    try:
        import uvicorn  # optional: the studio's web server (pip install 'steep[studio]')

        from steep.studio.app import (  # deferred: keeps `steep --help` light (no torch until a command runs)
            Settings,
            create_app,
        )
        from steep.studio.auth import LOCAL_HOSTS, TokenRedactor, check_bind
    except ImportError as exc:
        raise ConfigError(
            f"steep studio needs the web packages ({exc.name} is missing): "
            "pip install 'steep[studio]'"
        ) from None
    token = resolve_token(args)
    try:
        check_bind(args.host, token)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    local = args.host in LOCAL_HOSTS
    settings = Settings(
        home=steep_home(),
        token=token,
        trust_remote_code=args.trust_remote_code,
        max_upload_bytes=args.max_upload_mb << 20,
        max_workspace_upload_bytes=args.max_uploads_mb << 20,
        max_jobs=args.max_jobs,
        allowed_hosts=LOCAL_HOSTS if local else None,  # DNS rebinding: only our own names
        gpus_available=gpu_count(),
        slurm=slurm_options(args, prefix="slurm-") if args.slurm else None,
    )
    app = create_app(settings)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{shown}:{args.port}/" + ("?token=..." if token else "")
    print(f"steep studio on {url}  (workspace {settings.home}; Ctrl-C stops it, jobs go on)")
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level)
    for name in ("uvicorn.access", "uvicorn.error"):  # after Config set logging up
        logging.getLogger(name).addFilter(TokenRedactor())  # a ?token= link is not logged
    uvicorn.Server(config).run()
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("studio", help="web app: Data Hub, new run, live runs, Model Hub")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    s.add_argument("--port", type=int, default=DEFAULT_PORT, help="default %(default)s")
    s.add_argument(
        "--token-file",
        metavar="PATH",
        help="file holding the access token every request must carry (required off "
        "127.0.0.1; default: $STEEP_STUDIO_TOKEN); 16+ characters, no whitespace",
    )
    s.add_argument(
        "--token",
        help="the access token itself (shows in `ps`: prefer --token-file or the variable)",
    )
    s.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="let studio-launched runs set trust_remote_code (runs code shipped with a model)",
    )
    s.add_argument("--max-upload-mb", type=int, default=512, help="per upload (default 512)")
    s.add_argument(
        "--max-uploads-mb",
        type=int,
        default=4096,
        help="all uploads not yet made into datasets, together (default 4096)",
    )
    s.add_argument("--max-jobs", type=int, default=1, help="jobs running at once (default 1)")
    s.add_argument("--log-level", default="warning", help="uvicorn log level")
    s.add_argument(
        "--slurm",
        action="store_true",
        help="submit runs to Slurm (sbatch from this machine) instead of starting processes",
    )
    add_slurm_options(s, prefix="slurm-")
    s.set_defaults(func=cmd_studio)
