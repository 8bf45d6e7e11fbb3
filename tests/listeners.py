"""The socket table's view of a run: which TCP listeners its processes opened, and on what address.

Every listener that ``make run`` and ``make test`` start must accept connections from this machine
only: bound to a loopback address (127.0.0.0/8, ::1, or 127.0.0.1 mapped into IPv6), never to a
wildcard (``0.0.0.0``, ``::``, which ``ss -ltn`` shows as ``*``) or another interface's address.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable

import psutil


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 scope (fe80::1%eth0) is no part of it
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def listeners(procs: Iterable[psutil.Process]) -> list[tuple[str, int, str, int]]:
    """(process name, pid, address, port) of every TCP listener of ``procs`` and their descendants."""
    found, seen = [], set()
    for proc in procs:
        try:
            tree = [proc, *proc.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for member in tree:
            if member.pid in seen:
                continue
            seen.add(member.pid)
            try:
                connections = member.net_connections(kind="tcp")
                name = member.name()
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                continue
            found += [(name, member.pid, c.laddr.ip, c.laddr.port) for c in connections
                      if c.status == psutil.CONN_LISTEN]
    return sorted(found)


def not_on_loopback(procs: Iterable[psutil.Process]) -> list[tuple[str, int, str, int]]:
    """The listeners of ``procs`` (and their descendants) that other machines could reach."""
    return [entry for entry in listeners(procs) if not is_loopback(entry[2])]
