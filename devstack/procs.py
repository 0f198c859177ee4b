"""Processes, ports and waiting, for devstack.stack and devstack.distributed (psutil, tenacity; Linux).

- launching: :func:`launch` starts a service in its own session (so its own process group), its
  output appended to a log file; the children it started are reaped as they end (:func:`reap`).
- stopping: :func:`stop_groups` ends whole process groups and every descendant psutil finds of
  their members (``airflow standalone`` leaves its scheduler and workers behind as orphans when it
  is stopped); :func:`sweep` then ends the stack's processes that escaped, found by the marker
  variable every stack process inherits (:data:`MARKER_VAR`) or as Airflow processes of the state folder.
- waiting: :func:`wait_until` polls a check until it passes, else raises a :class:`StackError` naming
  what did not become ready and the log to read; :func:`poll_until` is the same without the error.
- ports: :func:`port_free`, :func:`free_ports`, :func:`port_open`, :func:`wait_for_port`, :func:`port_conflict`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import psutil
import tenacity

HOST = "127.0.0.1"
# Every process a stack starts carries this variable (value: the state dir). Descendants
# inherit it, so a stop can find them even after they left their process group.
MARKER_VAR = "DRIFTWATCH_STACK"
STOP_GRACE_SECONDS = 15.0
T = TypeVar("T")


class StackError(RuntimeError):
    """The stack cannot be started, or a service did not become healthy."""


# --------------------------------------------------------------------------- waiting


def poll_until(predicate: Callable[[], T], timeout: float, interval: float = 0.2) -> T:
    """Call ``predicate`` every ``interval`` s until it returns something truthy, for at most
    ``timeout`` s; return that result, or the last (falsy) one. Its exceptions propagate."""
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_delay(timeout),
        wait=tenacity.wait_fixed(interval),
        retry=tenacity.retry_if_not_result(bool),
        retry_error_callback=lambda state: state.outcome.result(),
    )
    return retrying(predicate)


def log_tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a log, indented, or "" when it cannot be read."""
    try:
        tail = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "\n".join("    " + line for line in tail)


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    what: str,
    *,
    log: Path | None = None,
    proc: subprocess.Popen[bytes] | None = None,
    interval: float = 0.5,
) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that.

    Raise a StackError naming ``what`` (and ``log``, with its tail) when ``timeout`` s pass first,
    or as soon as ``proc``, the process that should make it pass, has exited.
    """
    see = f"; see {log}\n{log_tail(log)}" if log else ""

    def ready() -> T:
        if (result := predicate()) or proc is None or proc.poll() is None:
            return result
        raise StackError(f"{what} exited with code {proc.returncode}{see}")

    if result := poll_until(ready, timeout, interval):
        return result
    raise StackError(f"{what} not healthy after {timeout:.0f} s{see}")


# --------------------------------------------------------------------------- ports


def port_free(port: int, host: str = HOST) -> bool:
    """True when ``port`` can be bound on ``host`` (nothing listens there)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_ports(count: int = 1, host: str = HOST) -> list[int]:
    """Distinct free ports on ``host`` (held open together so they differ)."""
    with contextlib.ExitStack() as held:
        socks = [held.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in socks]


def port_open(port: int, host: str = HOST, timeout: float = 1.0) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def wait_for_port(port: int, timeout: float, what: str, **kwargs: Any) -> None:
    """Wait until ``port`` accepts connections (``kwargs`` as for :func:`wait_until`)."""
    wait_until(lambda: port_open(port), timeout, what, **kwargs)


def port_owner(port: int) -> str:
    """Best-effort description of who listens on ``port``."""
    with contextlib.suppress(psutil.Error):  # access denied: the port number alone still helps
        for conn in psutil.net_connections(kind="inet"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                return f"pid {conn.pid} ({' '.join(psutil.Process(conn.pid).cmdline())[:100]})"
    return "another process"


def port_conflict(ports: dict[str, int], env_names: dict[str, str]) -> str | None:
    """The first port already taken, as a message naming its owner and the variable that moves it."""
    for service, port in ports.items():
        if not port_free(port):
            return (
                f"port {port} for {service} on {HOST} is already in use by {port_owner(port)}; "
                f"stop it or choose another port with {env_names[service]}=..."
            )
    return None


# --------------------------------------------------------------------------- launching

_children: dict[int, subprocess.Popen[bytes]] = {}  # started by launch(): reap them as they end


def launch(argv: list[str], env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session (own process group: a stop ends the whole tree),
    appending its output to ``log``; what it creates stays private to this user (umask 077)."""
    with open(log, "ab") as out:
        gap = "\n" if out.tell() else ""
        out.write(f"{gap}===== {datetime.now(UTC).isoformat()} start: {shlex.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            umask=0o077,
        )
    _children[proc.pid] = proc
    return proc


def reap() -> None:
    """Collect the exit status of each process :func:`launch` started that has ended."""
    for pid, proc in list(_children.items()):
        if proc.poll() is not None:
            del _children[pid]


def start_time(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch, 10 ms steps), or None if it is gone."""
    try:
        return round(psutil.Process(pid).create_time(), 2)
    except psutil.Error:
        return None


# --------------------------------------------------------------------------- finding processes


def _alive(proc: psutil.Process) -> bool:
    """Running and not a zombie (zombies are dead, merely unreaped)."""
    try:
        return proc.status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True


def _pgid(proc: psutil.Process) -> int | None:
    try:
        return os.getpgid(proc.pid)
    except OSError:
        return None


def group_members(pgid: int) -> list[psutil.Process]:
    """Live processes in process group ``pgid``."""
    return [p for p in psutil.process_iter() if _pgid(p) == pgid and _alive(p)]


def _environ(proc: psutil.Process) -> dict[str, str]:
    try:
        return proc.environ()
    except psutil.Error:
        return {}


def descendants(procs: Iterable[psutil.Process]) -> set[psutil.Process]:
    """Every live descendant of the processes, also those that left their process group or session."""
    found = set()
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            found.update(proc.children(recursive=True))
    return found


def group_is_ours(pgid: int, state: Path, started: float | None = None) -> bool:
    """Is process group ``pgid`` still one a stack of ``state`` started (not a reused number)?

    ``started`` (the leader's :func:`start_time`) proves it while the leader lives: Airflow renames
    its processes with setproctitle, which overwrites their environment and so the marker.
    """
    if started is not None and start_time(pgid) == started:
        return True
    marker = str(state)
    return any(_environ(p).get(MARKER_VAR) == marker for p in group_members(pgid))


@dataclass(frozen=True)
class Leftover:
    """A process that references the state folder after the stack was stopped."""

    pid: int
    cmdline: str
    ours: bool  # started by the stack (marker) or an Airflow process of this AIRFLOW_HOME
    proc: psutil.Process | None = field(default=None, compare=False, repr=False)


def _is_airflow(argv: list[str]) -> bool:
    """An ``airflow ...`` command, also after setproctitle renamed it ("airflow scheduler -- ...")."""
    return (bool(argv) and argv[0].startswith("airflow")) or any(Path(a).name == "airflow" for a in argv[:3])


def find_leftovers(state: Path) -> list[Leftover]:
    """Live processes whose environment or command line references ``state`` (never this one or its parents)."""
    needle, me = str(state), psutil.Process()
    skip = {me.pid, *(p.pid for p in me.parents())}
    found = []
    for proc in psutil.process_iter(["cmdline", "environ"], ad_value=None):
        argv, environ = proc.info["cmdline"] or [], proc.info["environ"] or {}
        texts = [*argv, *(f"{key}={value}" for key, value in environ.items())]
        if proc.pid in skip or not any(needle in text for text in texts) or not _alive(proc):
            continue
        # A shell, editor or `tail -f` that merely mentions the folder is the user's: report it.
        ours = environ.get(MARKER_VAR) == needle or _is_airflow(argv)
        found.append(Leftover(proc.pid, " ".join(argv)[:160], ours, proc))
    return found


# --------------------------------------------------------------------------- stopping


def _send(procs: Iterable[psutil.Process], sig: signal.Signals) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.Error):  # psutil refuses a pid that was reused meanwhile
            proc.send_signal(sig)


def _all_gone(procs: Iterable[psutil.Process]) -> bool:
    reap()
    return not any(_alive(p) for p in procs)


def kill(procs: list[psutil.Process]) -> None:
    """SIGTERM the processes, SIGKILL those still alive 5 s later, and wait (2 s more) for them to go."""
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
        _send(procs, sig)
        poll_until(functools.partial(_all_gone, procs), grace, 0.1)
        procs = [p for p in procs if _alive(p)]
        if not procs:
            return


def stop_groups(stages: list[tuple[float, dict[str, int]]]) -> list[str]:
    """Stop named process groups stage by stage, each stage gone before the next begins (dependents
    first): SIGTERM, and SIGKILL for a group still alive after its stage's grace (s). Return each
    service's stop time, or that it had to be killed."""
    return [line for grace, groups in stages for line in _stop_stage(grace, groups)]


def _stop_stage(grace: float, groups: dict[str, int]) -> list[str]:
    """Signal each group and the descendants of its members that left it; wait for all to go."""
    strays = {g: [c for c in descendants(group_members(g)) if _pgid(c) != g] for g in groups.values()}
    report, pending, began = [], dict(groups), time.monotonic()

    def signal_group(pgid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
        _send(strays[pgid], sig)

    def gone(pgid: int) -> bool:
        reap()
        return not group_members(pgid) and _all_gone(strays[pgid])

    def settle() -> bool:
        """Report the groups that are gone or overdue (then killed); True once none is left."""
        elapsed = time.monotonic() - began
        for name, pgid in list(pending.items()):
            if gone(pgid):
                report.append(f"{name} stopped in {elapsed:.1f} s (process group {pgid})")
            elif elapsed >= grace:
                signal_group(pgid, signal.SIGKILL)
                poll_until(functools.partial(gone, pgid), 5.0)
                report.append(f"{name} (process group {pgid}) ignored SIGTERM for {grace:.0f} s: killed")
            else:
                continue
            del pending[name]
        return not pending

    for pgid in groups.values():
        signal_group(pgid, signal.SIGTERM)
    poll_until(settle, float("inf"), 0.1)
    return report


def sweep(state: Path) -> list[str]:
    """Kill the stack's processes that escaped their groups; report other references to ``state``."""
    leftovers = find_leftovers(state)
    ours = [item for item in leftovers if item.ours]
    kill([item.proc for item in ours if item.proc])
    lines = [f"killed stray pid {i.pid} (left its process group): {i.cmdline}" for i in ours]
    lines += [f"left alone pid {i.pid} (not started by the stack): {i.cmdline}" for i in leftovers if not i.ours]
    return lines
