"""Two real hosts on this machine for tests: network namespaces with their own addresses
(veth pairs on a bridge) and hostnames (UTS namespaces), the same disk as shared storage.

``start`` makes the namespaces, starts munged (its socket is a path: every namespace
reaches it), slurmctld and a slurmd in the first host and a slurmd in the second, and
waits until both nodes are idle. ``Hosts.stop`` undoes all of it by PID and by the names
it made, also after a failure half-way. A host's processes run in its network namespace
(``nsenter``; not ``ip netns exec``, whose fresh /sys has no cgroup mount for slurmd) and
their own UTS and mount namespaces, where a hosts file binds over /etc/hosts (and a
resolv.conf with no server over /etc/resolv.conf): the hosts' names mean their addresses,
as DNS makes them on a real cluster. Traffic stays on the
bridge: nothing is routed out.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests import slurm_cluster
from tests.slurm_cluster import Cluster, ClusterUnavailable, start_munged, wait_idle


@dataclass
class Hosts:
    """The namespaces, links and files ``start`` made, and the cluster on them."""

    names: dict[str, str]  # host name -> address
    spaces: dict[str, str]  # host name -> network namespace
    bridge: str
    etc_hosts: Path  # both names with their addresses, /etc/hosts on every host
    cluster: Cluster | None = None
    links: list[str] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)  # what ``popen`` started, in order
    scratch: list[Path] = field(default_factory=list)  # folders removed at the end

    @property
    def first(self) -> str:
        return next(iter(self.names))

    def exec_argv(self, host: str, *argv: str) -> list[str]:
        """``argv`` run on ``host``: in its namespaces, under its hostname."""
        inner = (
            f"mount --bind {self.etc_hosts} /etc/hosts && "
            f"mount --bind {self.etc_hosts.with_name('resolv.conf')} /etc/resolv.conf && "
            f'hostname {host} && exec "$@"'
        )
        return ["nsenter", f"--net=/run/netns/{self.spaces[host]}", "unshare", "--uts",
                "--mount", "--propagation", "private", "sh", "-c", inner, "sh", *argv]  # fmt: skip

    def popen(self, host: str, *argv: str, **kw) -> subprocess.Popen:
        """Start ``argv`` on ``host``; its PID is kept for ``stop``."""
        proc = subprocess.Popen(self.exec_argv(host, *argv), **kw)
        self.pids.append(proc.pid)
        return proc

    def pids_in(self, host: str) -> list[int]:
        """Every process in ``host``'s network namespace (what ``ip netns pids`` lists)."""
        out = _ip("netns", "pids", self.spaces[host], check=False).stdout.split()
        return [int(p) for p in out if p.isdigit()]

    def rank_pid(self, host: str) -> int | None:
        """A training rank on ``host`` (torchrun's child, ``python -u -m steep ...``)."""
        for pid in self.pids_in(host):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv[1:4] == [b"-u", b"-m", b"steep"]:
                return pid
        return None

    def stop(self) -> None:
        """Cancel the jobs, stop the daemons, kill what is left in the namespaces (by PID),
        then delete the links, the bridge and the namespaces."""
        if self.cluster is not None:
            with contextlib.suppress(OSError):
                self.cluster.run("scancel", "--full", "--user=root", check=False)
            self.cluster.stop()  # munged
        if self.pids:
            Cluster(Path(), Path(), {}, self.pids).stop()  # TERM, last started first; a wait
        for host in self.spaces:
            for pid in self.pids_in(host):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for path in self.scratch:
            shutil.rmtree(path, ignore_errors=True)
        for link in [*self.links, self.bridge]:
            _ip("link", "del", link, check=False)
        for space in self.spaces.values():
            _ip("netns", "del", space, check=False)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise ClusterUnavailable(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def _plan(root: Path) -> Hosts:
    """Names unique to this process (another test run may hold its own namespaces)."""
    tag = os.getpid() % 100000
    net = f"10.236.{tag % 200 + 20}"
    names = {f"steep{tag}a": f"{net}.2", f"steep{tag}b": f"{net}.3"}
    spaces = {host: f"{host}-ns" for host in names}
    return Hosts(names, spaces, bridge=f"stbr{tag}", etc_hosts=root / "hosts")


def make_hosts(root: Path) -> Hosts:
    """The namespaces on a bridge, each with its address and a loopback; the hosts file.
    ClusterUnavailable (after undoing what was made) if namespaces cannot be made here."""
    if os.geteuid() != 0:
        raise ClusterUnavailable("needs root to make network namespaces")
    if not all(shutil.which(tool) for tool in ("ip", "nsenter", "unshare")):
        raise ClusterUnavailable("needs ip (iproute2), nsenter and unshare (util-linux)")
    hosts = _plan(root)
    net = next(iter(hosts.names.values())).rsplit(".", 1)[0]
    try:
        lines = "".join(f"{addr} {host}\n" for host, addr in hosts.names.items())
        hosts.etc_hosts.write_text(f"127.0.0.1 localhost\n{lines}")
        # no name server: an address not in the hosts file fails at once (torch's c10d
        # looks up its peers' names) instead of waiting seconds on a server out of reach
        hosts.etc_hosts.with_name("resolv.conf").write_text("options timeout:1 attempts:1\n")
        _ip("link", "add", hosts.bridge, "type", "bridge")
        _ip("addr", "add", f"{net}.1/24", "dev", hosts.bridge)
        _ip("link", "set", hosts.bridge, "up")
        for i, (host, addr) in enumerate(hosts.names.items()):
            space, link = hosts.spaces[host], f"{hosts.bridge}v{i}"
            _ip("netns", "add", space)
            hosts.links.append(link)
            _ip("link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", space)
            _ip("link", "set", link, "master", hosts.bridge, "up")
            _ip("-n", space, "addr", "add", f"{addr}/24", "dev", "eth0")
            _ip("-n", space, "link", "set", "eth0", "up")
            _ip("-n", space, "link", "set", "lo", "up")
    except BaseException:
        hosts.stop()
        raise
    return hosts


def start(root: Path, timeout: float = 60) -> Hosts:
    """Two hosts, munged, slurmctld on the first, a slurmd on each; both nodes idle."""
    missing = [d for d in slurm_cluster.DAEMONS if shutil.which(d) is None]
    if missing:
        raise ClusterUnavailable(f"not installed: {', '.join(missing)} (make slurm-deps)")
    root.mkdir(parents=True, exist_ok=True)
    hosts = make_hosts(root)
    try:
        for sub in ("state", "munge"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        for host in hosts.names:
            (root / f"spool-{host}").mkdir(exist_ok=True)
        conf = root / "slurm.conf"
        conf.write_text(slurm_cluster._conf(root, hosts.first, hosts.names))
        env = {**os.environ, "SLURM_CONF": str(conf)}
        hosts.cluster = cluster = Cluster(root, conf, env)
        logs = [root / "munged.log", root / "slurmctld.log"]
        logs += [root / f"slurmd-{h}.log" for h in hosts.names]

        def fail(why: str) -> ClusterUnavailable:
            return ClusterUnavailable(why + "; " + "; ".join(slurm_cluster._tail(p) for p in logs))

        munge = start_munged(root)
        if munge.returncode != 0:
            raise fail(f"munged did not start: {munge.stderr.strip()}")
        cluster.pids.append(int((root / "munged.pid").read_text()))
        with open(root / "daemons.out", "ab") as out:
            hosts.popen(hosts.first, "slurmctld", "-D", "-f", str(conf), env=env,
                        stdout=out, stderr=out)  # fmt: skip
            for host in hosts.names:
                hosts.popen(host, "slurmd", "-D", "-N", host, "-f", str(conf), env=env,
                            stdout=out, stderr=out)  # fmt: skip
        wait_idle(cluster, "idle", timeout, fail)
    except BaseException:
        hosts.stop()
        raise
    return hosts


def wait_for(what: str, ok, timeout: float = 180, every: float = 0.2):
    """Poll ``ok`` until it is true, and return what it gave; TimeoutError naming ``what``
    after ``timeout``."""
    deadline = time.time() + timeout
    while not (value := ok()):
        if time.time() > deadline:
            raise TimeoutError(f"waited {timeout:.0f}s for {what}")
        time.sleep(every)
    return value


RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}  # no token files
# the head finds a lost node in about 2 s (Ray's defaults: 5 failed checks 3 s apart)
RAY_HEAD_ENV = {"RAY_health_check_period_ms": "500", "RAY_health_check_failure_threshold": "4"}


def _ray() -> str:
    return str(Path(sys.executable).parent / "ray")


def start_ray(hosts: Hosts, log: Path, port: int = 6379) -> str:
    """``ray start --head`` on the first host with no CPUs (it only schedules), ``ray start
    --address`` on the second with 2, so every task runs on the second host; waits until
    that node has joined. The head's HOST:PORT; both stop (by PID) with ``hosts``."""
    first = hosts.first
    head = f"{hosts.names[first]}:{port}"
    env = {**os.environ, **RAY_ENV, **RAY_HEAD_ENV}
    # each node's own temp dir (short: Ray's socket paths must fit 107 bytes): ``ray start``
    # writes its address where a plain ``ray.init()`` looks for a cluster to join, and
    # /tmp/ray's is every other Ray user's on this machine
    temp = Path(tempfile.mkdtemp(prefix="sray", dir="/tmp"))
    hosts.scratch.append(temp)
    with open(log, "ab") as out:
        hosts.popen(first, _ray(), "start", "--head", f"--port={port}", "--num-cpus=0",
                    f"--node-ip-address={hosts.names[first]}", "--include-dashboard=false",
                    f"--temp-dir={temp / 'a'}", "--block", env=env, stdout=out,
                    stderr=out)  # fmt: skip
    join_ray(hosts, head, log, temp / "b")
    return head


def join_ray(hosts: Hosts, head: str, log: Path, temp: Path) -> None:
    """A Ray worker node (2 CPUs) on the second host, joined to ``head``; waits until the
    cluster has exactly one live node with CPUs (a node lost before has been noticed)."""
    first, second = hosts.names
    env = {**os.environ, **RAY_ENV}
    with open(log, "ab") as out:
        hosts.popen(second, _ray(), "start", f"--address={head}", "--num-cpus=2",
                    f"--node-ip-address={hosts.names[second]}", f"--temp-dir={temp}",
                    "--block", env=env, stdout=out, stderr=out)  # fmt: skip
    probe = f"import ray; ray.init('{head}', logging_level='ERROR'); "
    probe += "print(sum(n['Alive'] and n['Resources'].get('CPU', 0) > 0 for n in ray.nodes()))"

    def up() -> bool:
        argv = hosts.exec_argv(first, sys.executable, "-c", probe)
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
        return done.stdout.strip() == "1"

    wait_for("the Ray worker node", up, 120, every=1)


def lose_ray_node(hosts: Hosts, host: str) -> list[int]:
    """SIGKILL ``host``'s raylet, then whatever of Ray is left there (its workers, ``ray
    start``): the node is lost as a machine that dies is. Waits until all of it is gone;
    the PIDs killed."""

    def ray_pids(raylet_only: bool = False) -> list[int]:
        found = []
        for pid in hosts.pids_in(host):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if (b"/raylet" in argv.split(b"\0")[0]) if raylet_only else b"ray" in argv:
                found.append(pid)
        return found

    raylets = ray_pids(raylet_only=True)
    assert raylets, "no raylet on " + host
    killed = []
    for pid in [*raylets, *ray_pids()]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    wait_for(f"Ray's processes on {host} to end", lambda: not ray_pids(), 60)
    return killed
