"""``python -m steep.launch.elastic ARGS`` is torchrun (``torch.distributed.run``) with one
check first, on a node that joins another node's c10d rendezvous: the endpoint must accept
a connection within the rendezvous timeout, or the node exits 1 with one line naming it.

torchrun alone also gives up after its ``read_timeout`` (60 s by default), but with a
screen of C++ warnings and two Python tracebacks per node, where the address is easy to
miss. The check waits exactly as long as torchrun would (the ``read_timeout`` in
``--rdzv-conf``), so a first node that is merely slow to start is still met. The node that
hosts the store (torch's own test: the endpoint names this machine) skips it.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time

DEFAULT_TIMEOUT_S = 60  # torch's read_timeout for the c10d rendezvous store
POLL_S = 0.5


class RendezvousUnreachable(Exception):
    """The c10d endpoint did not accept a connection in time."""


def _flags(argv: list[str]) -> argparse.Namespace:
    """The rendezvous flags among torchrun's own (those before ``-m`` / the script)."""
    p = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    p.add_argument("--rdzv-backend", "--rdzv_backend", default="static")
    p.add_argument("--rdzv-endpoint", "--rdzv_endpoint", default="")
    p.add_argument("--rdzv-conf", "--rdzv_conf", default="")
    p.add_argument("--standalone", action="store_true")
    cut = argv.index("-m") if "-m" in argv else len(argv)
    return p.parse_known_args(argv[:cut])[0]


def endpoint_to_check(argv: list[str]) -> tuple[str, int, float] | None:
    """(host, port, timeout) when this node joins a c10d store elsewhere; None otherwise."""
    args = _flags(argv)
    if args.standalone or args.rdzv_backend != "c10d" or not args.rdzv_endpoint:
        return None
    conf = dict(kv.split("=", 1) for kv in args.rdzv_conf.split(",") if "=" in kv)
    timeout = float(conf.get("read_timeout", DEFAULT_TIMEOUT_S))
    host, _, port = args.rdzv_endpoint.rpartition(":")
    if not host or not port.isdigit():
        return None  # torchrun's own error names it
    host = host.strip("[]")
    if conf.get("is_host", "").lower() in ("1", "true", "yes") or _hosts_store(host):
        return None
    return host, int(port), timeout


def _hosts_store(host: str) -> bool:
    """torchrun's own test of whether this node hosts the rendezvous store."""
    # deferred: torch is slow to import; the script and its --help need not wait for it
    from torch.distributed.elastic.rendezvous.utils import _matches_machine_hostname

    return _matches_machine_hostname(host)


def wait_for_endpoint(host: str, port: int, timeout: float) -> None:
    """Return once ``host:port`` accepts a connection; RendezvousUnreachable after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        try:
            with socket.create_connection((host, port), timeout=max(min(left, 5.0), 0.1)):
                return
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
        if time.monotonic() + POLL_S > deadline:
            raise RendezvousUnreachable(
                f"the rendezvous at {host}:{port} did not answer within {timeout:g} s ({why}) "
                f"from {socket.gethostname()}: is the first node's torchrun running, and is "
                "the port open between the nodes? (torchrun --rdzv-conf read_timeout=S waits "
                "longer)"
            )
        time.sleep(POLL_S)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    target = endpoint_to_check(argv)
    if target is not None:
        try:
            wait_for_endpoint(*target)
        except RendezvousUnreachable as exc:
            print(f"steep: error: {exc}", file=sys.stderr, flush=True)
            return 1
    # deferred: a node that cannot reach the rendezvous ends without importing torch's launcher
    from torch.distributed.run import main as torchrun

    sys.argv = ["torchrun", *argv]  # torchrun reads its own argv (and names itself in --help)
    torchrun()
    return 0


if __name__ == "__main__":
    sys.exit(main())
