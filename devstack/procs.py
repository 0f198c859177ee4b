"""Processes, ports and waiting for devstack's stacks, on psutil and tenacity (Linux).

A stop ends each service's process group and its members' descendants (``airflow standalone`` leaves
its scheduler and workers behind), then sweeps escapees: those carrying :data:`MARKER_VAR`, and Airflow's.
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
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple, TypeVar

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


def poll_until(predicate: Callable[[], T], timeout: float, interval: float = 0.2) -> T:
    """``predicate()`` every ``interval`` s until truthy or ``timeout``; its last result."""
    return tenacity.Retrying(
        stop=tenacity.stop_after_delay(timeout),
        wait=tenacity.wait_fixed(interval),
        retry=tenacity.retry_if_not_result(bool),
        retry_error_callback=lambda state: state.outcome.result(),
    )(predicate)


def log_tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join("    " + line for line in path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def port_free(port: int, host: str = HOST) -> bool:
    with contextlib.suppress(OSError), socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        return True
    return False


def free_ports(count: int = 1, host: str = HOST) -> list[int]:
    """Distinct free ports on ``host`` (held open together so they differ)."""
    with contextlib.ExitStack() as held:
        socks = [held.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in socks]


def check_ports(ports: dict[str, int], env_names: dict[str, str], error: type[Exception] = StackError) -> None:
    """Raise ``error`` for the first port already taken, naming its owner and the variable that moves it."""
    for service, port in ports.items():
        if port_free(port):
            continue
        owner = "another process"
        with contextlib.suppress(psutil.Error):  # access denied: the port number alone still helps
            for conn in psutil.net_connections(kind="inet"):
                if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                    owner = f"pid {conn.pid} ({' '.join(psutil.Process(conn.pid).cmdline())[:100]})"
        raise error(
            f"port {port} for {service} on {HOST} is already in use by {owner}; "
            f"stop it or choose another port with {env_names[service]}=..."
        )


def launch(argv: list[str], env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own process group, output appended to ``log``, umask 077."""
    with open(log, "ab") as out:
        gap = "\n" if out.tell() else ""
        out.write(f"{gap}===== {datetime.now(UTC).isoformat()} start: {shlex.join(argv)}\n".encode())
        out.flush()
        streams = {"stdin": subprocess.DEVNULL, "stdout": out, "stderr": subprocess.STDOUT}
        return subprocess.Popen(argv, cwd=cwd, env=env, start_new_session=True, umask=0o077, **streams)


def start_time(pid: int) -> float | None:
    """Recorded with a service's pgid: it proves the group ours again while its leader lives."""
    with contextlib.suppress(psutil.Error):
        return round(psutil.Process(pid).create_time(), 2)
    return None


def _alive(proc: psutil.Process) -> bool:
    """Running and not a zombie (zombies are dead, merely unreaped)."""
    try:
        return proc.status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True


def _pgid(proc: psutil.Process) -> int | None:
    with contextlib.suppress(OSError):
        return os.getpgid(proc.pid)
    return None


def group_members(pgid: int) -> list[psutil.Process]:
    return [p for p in psutil.process_iter() if _pgid(p) == pgid and _alive(p)]


def group_is_ours(pgid: int, state: Path, started: float | None = None) -> bool:
    """Not a reused pgid? ``started`` (the leader's start_time) proves it while the leader lives:
    Airflow's setproctitle overwrites the environment, and so the marker."""
    if started is not None and start_time(pgid) == started:
        return True
    members = (p.as_dict(["environ"], ad_value=None)["environ"] or {} for p in group_members(pgid))
    return any(environ.get(MARKER_VAR) == str(state) for environ in members)


class Leftover(NamedTuple):
    pid: int
    cmdline: str
    ours: bool  # started by the stack (marker) or an Airflow process of this AIRFLOW_HOME
    proc: psutil.Process | None = None


def find_leftovers(state: Path) -> list[Leftover]:
    """Live processes (not this one or its parents) whose environment or argv mention ``state``."""
    needle, me = str(state), psutil.Process()
    skip, found = {me.pid, *(p.pid for p in me.parents())}, []
    for proc in psutil.process_iter(["cmdline", "environ"], ad_value=None):
        argv, environ = proc.info["cmdline"] or [], proc.info["environ"] or {}
        texts = [*argv, *(f"{key}={value}" for key, value in environ.items())]
        if proc.pid in skip or not any(needle in text for text in texts) or not _alive(proc):
            continue
        # A shell, editor or `tail -f` that merely mentions the folder is the user's: report it.
        # Airflow's is ours, also after setproctitle renamed it ("airflow scheduler -- ...").
        airflow = (bool(argv) and argv[0].startswith("airflow")) or any(Path(a).name == "airflow" for a in argv[:3])
        found.append(Leftover(proc.pid, " ".join(argv)[:160], environ.get(MARKER_VAR) == needle or airflow, proc))
    return found


def _send(procs: Iterable[psutil.Process], sig: signal.Signals) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.Error):  # psutil refuses a pid that was reused meanwhile
            proc.send_signal(sig)


def _names(procs: Iterable[psutil.Process]) -> str:
    """The live ones as "pid (command)", so that a hung stop says which process hung."""
    names = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            if _alive(proc):
                names.append(f"{proc.pid} ({' '.join(proc.cmdline())[:80]})")
    return ", ".join(names) or "(none left)"


def _all_gone(procs: Iterable[psutil.Process]) -> bool:
    return not any(_alive(p) for p in procs)


def stop_groups(stages: list[tuple[float, dict[str, int]]]) -> list[str]:
    """SIGTERM the groups stage by stage (each gone before the next), SIGKILL after the grace (s)."""
    return [line for grace, groups in stages for line in _stop_stage(grace, groups)]


def _stop_stage(grace: float, groups: dict[str, int]) -> list[str]:
    # Each group with its members' descendants that left it: once their parents are gone they are lost.
    strays = {g: set() for g in groups.values()}
    for pgid, found in strays.items():
        for member in group_members(pgid):
            with contextlib.suppress(psutil.Error):
                found.update(c for c in member.children(recursive=True) if _pgid(c) != pgid)
    report, pending, began = [], dict(groups), time.monotonic()

    def signal_group(pgid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
        _send(strays[pgid], sig)

    def gone(pgid: int) -> bool:
        return not group_members(pgid) and _all_gone(strays[pgid])

    def settle() -> bool:
        elapsed = time.monotonic() - began
        for name, pgid in list(pending.items()):
            if gone(pgid):
                report.append(f"{name} stopped in {elapsed:.1f} s (process group {pgid})")
            elif elapsed >= grace:
                survivors = _names([*group_members(pgid), *strays[pgid]])
                signal_group(pgid, signal.SIGKILL)
                poll_until(functools.partial(gone, pgid), 5.0)
                report.append(f"{name} (process group {pgid}) ignored SIGTERM for {grace:.0f} s: killed {survivors}")
            else:
                continue
            del pending[name]
        return not pending

    for pgid in groups.values():
        signal_group(pgid, signal.SIGTERM)
    poll_until(settle, float("inf"), 0.1)
    return report


def sweep(state: Path) -> list[str]:
    """Kill the stack's escapees (SIGTERM, SIGKILL 5 s later); report the other references to ``state``."""
    leftovers = find_leftovers(state)
    ours = [item.proc for item in leftovers if item.ours and item.proc]
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
        _send(ours, sig)
        if poll_until(functools.partial(_all_gone, ours), grace, 0.1):
            break
    lines = [f"killed stray pid {i.pid} (left its process group): {i.cmdline}" for i in leftovers if i.ours]
    return lines + [f"left alone pid {i.pid} (not started by the stack): {i.cmdline}" for i in leftovers if not i.ours]
