"""Memory per idle client connection: rwsplit's RSS with 0, 1 000 and
10 000 logged-in clients that send nothing.

The clients are minimal: asyncio sockets that do the MySQL handshake with
mysql_native_password and then stay silent. A driver such as PyMySQL would
also send SET NAMES and SET autocommit, statements that make rwsplit open
the session's primary connection: not an idle client any more, and 10 000
backend connections the servers would refuse."""

import asyncio
import hashlib
import resource
import struct

from processes import rss_kib

PROTOCOL_41 = 0x200
SECURE_CONNECTION = 0x8000
PLUGIN_AUTH = 0x80000
LONG_PASSWORD = 0x1
TRANSACTIONS = 0x2000
CAPABILITIES = PROTOCOL_41 | SECURE_CONNECTION | PLUGIN_AUTH | LONG_PASSWORD | TRANSACTIONS
UTF8MB4_GENERAL_CI = 45


def raise_fd_limit(wanted: int):
    """Lets this process (and rwsplit, started after it) hold `wanted`
    sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return
    if hard < wanted:
        raise RuntimeError(f"the file descriptor limit is {hard}; {wanted} are needed")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def scramble(password: bytes, nonce: bytes) -> bytes:
    """mysql_native_password: SHA1(pw) XOR SHA1(nonce + SHA1(SHA1(pw)))."""
    stage1 = hashlib.sha1(password).digest()
    stage2 = hashlib.sha1(stage1).digest()
    mask = hashlib.sha1(nonce + stage2).digest()
    return bytes(a ^ b for a, b in zip(stage1, mask))


async def read_packet(reader) -> bytes:
    header = await reader.readexactly(4)
    length = header[0] | header[1] << 8 | header[2] << 16
    return await reader.readexactly(length)


def write_packet(writer, seq: int, payload: bytes):
    writer.write(struct.pack("<I", len(payload))[:3] + bytes([seq]) + payload)


async def log_in(port: int, user: bytes, password: bytes):
    """An authenticated, silent client connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    greeting = await read_packet(reader)
    version_end = greeting.index(b"\0", 1)
    at = version_end + 1 + 4
    nonce = greeting[at : at + 8]
    at += 8 + 1 + 2 + 1 + 2 + 2
    nonce_len = greeting[at]
    at += 1 + 10
    nonce += greeting[at : at + max(13, nonce_len - 8) - 1]
    response = (
        struct.pack("<IIB", CAPABILITIES, 1 << 24, UTF8MB4_GENERAL_CI)
        + b"\0" * 23
        + user + b"\0"
        + bytes([20]) + scramble(password, nonce)
        + b"mysql_native_password\0"
    )
    write_packet(writer, 1, response)
    await writer.drain()
    answer = await read_packet(reader)
    if answer[:1] != b"\x00":
        raise RuntimeError(f"login refused: {answer!r}")
    return writer


async def open_clients(port: int, clients: list, target: int):
    limit = asyncio.Semaphore(100)

    async def one():
        async with limit:
            clients.append(await log_in(port, b"app", b"app"))

    await asyncio.gather(*(one() for _ in range(target - len(clients))))


def measure(port: int, pid: int, steps: list) -> dict:
    """RSS in KiB at each number of idle clients in `steps` (ascending),
    and the slope in KiB per client between the first and last step."""

    async def run():
        clients, rss = [], {}
        # Warm up what the first sessions allocate once.
        await open_clients(port, clients, 10)
        for writer in clients:
            writer.close()
        clients.clear()
        await asyncio.sleep(0.5)
        for step in steps:
            await open_clients(port, clients, step)
            await asyncio.sleep(0.5)
            rss[step] = rss_kib(pid)
        for writer in clients:
            writer.close()
        return rss

    rss = asyncio.run(run())
    first, last = steps[0], steps[-1]
    slope = (rss[last] - rss[first]) / (last - first)
    return {"rss_kib": {str(k): v for k, v in rss.items()}, "kib_per_connection": round(slope, 2)}
