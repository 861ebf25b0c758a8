"""The processes a benchmark runs against: a MariaDB sandbox, rwsplit and
HAProxy. Each is started here, known by its PID, and stopped by that PID."""

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process and all its threads."""
    with open(f"/proc/{pid}/stat") as f:
        # The command name may hold spaces; the fields after it do not.
        fields = f.read().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLOCK_TICKS


def cpu_ticks() -> list:
    """The whole machine's CPU time so far (all CPUs) by kind, in clock
    ticks: user nice system idle iowait irq softirq steal guest guest_nice
    (guest time is also counted in user and nice)."""
    with open("/proc/stat") as f:
        return [int(t) for t in f.readline().split()[1:]]


def machine_busy_seconds() -> float:
    """CPU time the whole machine has spent busy so far, on an arbitrary
    origin: the time elapsed on every CPU less the time each spent idle,
    waiting for I/O or stolen by the hypervisor. The kernel measures those
    three exactly; the busy counters of /proc/stat it samples at the
    scheduler's tick, which stops on an idle CPU, so they miss much of the
    short bursts of a machine that is not saturated (one client)."""
    with open("/proc/stat") as f:
        cpus = sum(1 for line in f if re.match(r"cpu\d", line))
    now = time.monotonic()
    ticks = cpu_ticks()
    idle, iowait, steal = ticks[3], ticks[4], ticks[7]
    return now * cpus - (idle + iowait + steal) / CLOCK_TICKS


def machine_ticks() -> tuple:
    """The whole machine's CPU time so far (all CPUs), and the part of it
    the hypervisor gave to other guests (`steal`), in clock ticks."""
    ticks = cpu_ticks()
    return sum(ticks[:8]), ticks[7]


def context_switches(pid: int) -> tuple:
    """(voluntary, involuntary) context switches of all a process's threads."""
    voluntary = involuntary = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/status") as f:
            for line in f:
                if line.startswith("voluntary_ctxt_switches:"):
                    voluntary += int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches:"):
                    involuntary += int(line.split()[1])
    return voluntary, involuntary


def migrations(pid: int) -> int:
    """Times the scheduler has moved any of a process's threads to another
    CPU (`se.nr_migrations`). A move costs the thread its warm caches:
    about 10 µs of CPU per move at one client (docs/benchmarks.md, step 13)."""
    moved = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/sched") as f:
            for line in f:
                if line.startswith("se.nr_migrations"):
                    moved += int(line.split(":")[1])
    return moved


def tcp_segments_sent() -> int:
    """TCP segments the whole machine has sent (`OutSegs` in
    /proc/net/snmp): on loopback, each one is also received."""
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Tcp:")]
    return int(rows[1][rows[0].index("OutSegs")])


def server_pids(sandbox_pid: int) -> dict:
    """The sandbox's MariaDB servers by port: the PIDs of its children whose
    command line has `--port=N`."""
    found = {}
    for task in os.listdir(f"/proc/{sandbox_pid}/task"):
        with open(f"/proc/{sandbox_pid}/task/{task}/children") as f:
            for child in f.read().split():
                with open(f"/proc/{child}/cmdline", "rb") as cmdline:
                    for arg in cmdline.read().split(b"\0"):
                        if arg.startswith(b"--port="):
                            found[int(arg[len(b"--port="):])] = int(child)
    return found


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def stop(process: subprocess.Popen, sig=signal.SIGTERM, grace=15.0):
    """Stops a child by its PID: `sig`, then SIGKILL after `grace` seconds."""
    if process.poll() is not None:
        return
    os.kill(process.pid, sig)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()


@dataclass
class Server:
    name: str
    role: str
    port: int


class Sandbox:
    """`rwsplit sandbox`: a MariaDB primary and replicas on free ports."""

    def __init__(self, binary: str, replicas: int = 2):
        self.dir = tempfile.mkdtemp(prefix="rwsplit-bench-")
        self.process = subprocess.Popen(
            [binary, "sandbox", "--replicas", str(replicas), "--dir", self.dir],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.servers = []
        for line in self.process.stdout:
            found = re.match(r"\s+(db\d+)\s+(primary|replica)\s+127\.0\.0\.1:(\d+)", line)
            if found:
                self.servers.append(Server(found[1], found[2], int(found[3])))
            if line.startswith("Press Ctrl-C"):
                break
        if len(self.servers) != replicas + 1:
            stop(self.process, signal.SIGINT)
            raise RuntimeError(f"the sandbox did not start: {self.process.stderr.read()}")

    def server_pids(self) -> dict:
        """Each server's PID, by its name."""
        by_port = server_pids(self.process.pid)
        missing = [s.name for s in self.servers if s.port not in by_port]
        if missing:
            raise RuntimeError(f"no process found for sandbox servers {missing}")
        return {s.name: by_port[s.port] for s in self.servers}

    @property
    def primary(self) -> Server:
        return self.servers[0]

    @property
    def replicas(self) -> list:
        return self.servers[1:]

    def close(self):
        # Ctrl-C: the sandbox stops its servers by PID and removes nothing
        # we did not ask for (--dir is ours to remove).
        stop(self.process, signal.SIGINT, grace=60)
        subprocess.run(["rm", "-rf", self.dir], check=False)


@contextlib.contextmanager
def sandbox_with_targets(binary: str):
    """A sandbox, and a dict for the proxies started over it: on the way out
    the proxies are stopped, then the sandbox, each by its PID."""
    sandbox = Sandbox(binary)
    targets = {}
    try:
        yield sandbox, targets
    finally:
        for target in targets.values():
            target.close()
        sandbox.close()


class Rwsplit:
    """`rwsplit serve` over a sandbox, reads split to its replicas."""

    def __init__(self, binary: str, sandbox: Sandbox, max_clients: int = 20000, threads=None, pin=False,
                 ready_timeout: float = 30.0, routing: str = ""):
        self.port = free_port()
        self.admin_port = free_port()
        backends = "".join(
            f"  - {{ name: {s.name}, address: '127.0.0.1:{s.port}', role: {s.role} }}\n"
            for s in sandbox.servers
        )
        threads = f", threads: {threads}" if threads else ""
        pinned = ", pin_threads: true" if pin else ""
        config = (
            f"listen: {{ address: '127.0.0.1:{self.port}', max_client_connections: {max_clients}{threads}{pinned} }}\n"
            f"admin: {{ address: '127.0.0.1:{self.admin_port}' }}\n"
            "users: [{ name: app, password: app }]\n"
            f"backends:\n{backends}"
            "monitor: { user: monitor, password: monitor }\n"
            + (f"routing: {{ {routing} }}\n" if routing else "")
        )
        self.config_path = os.path.join(sandbox.dir, f"bench-{self.port}.yaml")
        with open(self.config_path, "w") as f:
            f.write(config)
        env = dict(os.environ, RUST_LOG="warn")
        self.log = open(os.path.join(sandbox.dir, f"rwsplit-{self.port}.log"), "w")
        self.process = subprocess.Popen(
            [binary, "serve", "-c", self.config_path],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.wait_ready(ready_timeout)

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, timeout=30.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"rwsplit exited: see {self.log.name}")
            try:
                status = self.status()
                if status["ready"] and all(
                    b["readable"] for b in status["backends"] if b["role"] == "replica"
                ):
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"rwsplit did not become ready with both replicas readable within {timeout:.0f} s")

    def status(self) -> dict:
        url = f"http://127.0.0.1:{self.admin_port}/status"
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.load(response)

    def close(self):
        stop(self.process, signal.SIGTERM)
        self.log.close()


class Haproxy:
    """HAProxy in TCP mode, round robin over `servers`. With `cpu_map`, one
    thread per CPU the harness may use, thread i bound to the i-th CPU
    (`cpu-map`), as rwsplit's `listen.pin_threads` binds its threads."""

    def __init__(self, servers: list, workdir: str, maxconn: int = 4096, prefix: tuple = (),
                 cpu_map: bool = False):
        self.port = free_port()
        lines = "\n".join(
            f"    server {s.name} 127.0.0.1:{s.port}" for s in servers
        )
        cpus = sorted(os.sched_getaffinity(0))
        pinned = (f"    nbthread {len(cpus)}\n"
                  f"    cpu-map auto:1/1-{len(cpus)} {' '.join(map(str, cpus))}\n") if cpu_map else ""
        config = f"""global
    maxconn {maxconn}
{pinned}defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
listen mysql
    bind 127.0.0.1:{self.port}
    balance roundrobin
{lines}
"""
        path = os.path.join(workdir, f"haproxy-{self.port}.cfg")
        with open(path, "w") as f:
            f.write(config)
        # -db: stay in the foreground, so the PID is HAProxy's own.
        # `prefix` runs it under another program (valgrind), which execs it.
        self.process = subprocess.Popen(
            [*prefix, "haproxy", "-db", "-f", path],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.process.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"haproxy did not start: {self.process.stderr.read()}")
                time.sleep(0.05)

    @property
    def pid(self) -> int:
        return self.process.pid

    def close(self):
        stop(self.process)
