"""Memory per idle client connection: rwsplit's RSS with 0, 1 000 and
10 000 logged-in clients that send nothing."""

import resource

import pymysql

from processes import rss_kib


def raise_fd_limit(wanted: int):
    """Lets this process (and rwsplit, started after it) hold `wanted`
    sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(wanted, hard), max(wanted, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        if hard < wanted:
            raise RuntimeError(
                f"the file descriptor limit is {hard}; {wanted} are needed (run as root or raise it)"
            )


def measure(port: int, pid: int, steps: list) -> dict:
    """RSS in KiB at each number of idle clients in `steps` (ascending),
    and the slope in KiB per client between the first and last step."""
    clients = []
    rss = {}

    def connect():
        return pymysql.connect(host="127.0.0.1", port=port, user="app", password="app")

    # Warm up what the first sessions allocate once.
    for _ in range(10):
        connect().close()
    for step in steps:
        while len(clients) < step:
            clients.append(connect())
        rss[step] = rss_kib(pid)
    first, last = steps[0], steps[-1]
    slope = (rss[last] - rss[first]) / (last - first)
    for client in clients:
        client.close()
    return {"rss_kib": {str(k): v for k, v in rss.items()}, "kib_per_connection": round(slope, 2)}
