"""One local service process: spawn it, record it, and stop exactly it by PID.

Used by newsrec.services. A record survives in a JSON state file so that another process (`newsrec down`) can
stop the same PIDs later; identity is checked through /proc (Linux) so a recycled PID is never signalled.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

STATE_FILE_NAME = "services.json"


class ServiceError(RuntimeError):
    """A local or configured service cannot be used."""


class ServiceBinaryNotFound(ServiceError):
    """The executable for a local service is not installed; the message says how to install it."""


class ServiceStartError(ServiceError):
    """A service exited early or did not answer within the timeout; the message carries its log tail."""


@dataclass(frozen=True)
class ServiceProcess:
    """A started service. `cmd_token` must appear in /proc/PID/cmdline and `start_ticks` (field 22 of
    /proc/PID/stat, clock ticks since boot) must match, or the PID is no longer ours."""

    name: str
    pid: int
    start_ticks: int
    port: int
    url: str
    argv: tuple[str, ...]
    log_path: str
    cmd_token: str


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    port: int,
    url: str,
    cmd_token: str,
    log_path: Path,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    die_with_parent: bool = False,
) -> tuple[ServiceProcess, subprocess.Popen]:
    """Start argv in its own session (so it outlives a CLI that exits) with stdout+stderr appended to log_path.

    die_with_parent asks the kernel to SIGTERM the service when the spawning thread dies (test sessions that get
    killed leave nothing behind); it needs util-linux `setpriv`, which execs in place so the PID is unchanged.
    """
    command = list(argv)
    if die_with_parent and (setpriv := shutil.which("setpriv")):
        command = [setpriv, "--pdeathsig", "TERM", "--", *command]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=None if env is None else dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    record = ServiceProcess(
        name=name,
        pid=proc.pid,
        start_ticks=_start_ticks(proc.pid) or 0,
        port=port,
        url=url,
        argv=tuple(argv),
        log_path=str(log_path),
        cmd_token=cmd_token,
    )
    return record, proc


def is_running(record: ServiceProcess) -> bool:
    """True while the recorded PID is alive (not a zombie) and is still the process we started."""
    state = _proc_state(record.pid)
    if state in ("Z", "X"):
        if _start_ticks(record.pid) == record.start_ticks:
            _reap(record.pid)
        return False
    return state is not None and _is_ours(record)


def wait_until_exited(record: ServiceProcess, timeout_s: float) -> bool:
    """Poll until the process is gone; True if it exited within timeout_s."""
    deadline = time.monotonic() + timeout_s
    while is_running(record):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def stop(record: ServiceProcess, grace_s: float = 5.0) -> bool:
    """SIGTERM, wait up to grace_s, then SIGKILL. Returns True if our process was running and is now gone.

    Only the recorded PID is signalled, and only after its identity checks out.
    """
    if not is_running(record):
        return False
    _signal(record.pid, signal.SIGTERM)
    if wait_until_exited(record, grace_s):
        return True
    return kill(record)


def kill(record: ServiceProcess, timeout_s: float = 5.0) -> bool:
    """SIGKILL now (a crash, for fault tests). Returns True if our process was running and is now gone."""
    if not is_running(record):
        return False
    _signal(record.pid, signal.SIGKILL)
    if not wait_until_exited(record, timeout_s):
        raise ServiceError(f"{record.name} (pid {record.pid}) survived SIGKILL for {timeout_s} s")
    return True


def log_tail(log_path: str | Path, lines: int = 30) -> str:
    """The last lines of a service log, for error messages; empty if there is no log."""
    try:
        text = Path(log_path).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def state_path(state_dir: Path) -> Path:
    return state_dir / STATE_FILE_NAME


def read_state(state_dir: Path) -> dict[str, ServiceProcess]:
    """The records in state_dir, by service name; empty if there is no state file."""
    try:
        raw = json.loads(state_path(state_dir).read_text())
    except FileNotFoundError:
        return {}
    return {name: ServiceProcess(**{**rec, "argv": tuple(rec["argv"])}) for name, rec in raw["services"].items()}


def write_state(state_dir: Path, records: Mapping[str, ServiceProcess]) -> None:
    """Replace the state file atomically (write then rename) so a concurrent reader never sees half a file."""
    state_dir.mkdir(parents=True, exist_ok=True)
    payload = {"services": {name: dataclasses.asdict(rec) for name, rec in records.items()}}
    tmp = state_path(state_dir).with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(state_path(state_dir))


def remove_state(state_dir: Path) -> None:
    state_path(state_dir).unlink(missing_ok=True)


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _reap(pid: int) -> None:
    # A service started by this very process stays a zombie until we wait for it: reap it so the PID disappears.
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _is_ours(record: ServiceProcess) -> bool:
    if record.start_ticks and _start_ticks(record.pid) != record.start_ticks:
        return False
    # /proc/PID/cmdline reads empty for a moment while the process execs (setpriv -> service): read again.
    for _ in range(20):
        try:
            cmdline = Path(f"/proc/{record.pid}/cmdline").read_bytes()
        except OSError:
            return False
        if cmdline:
            return record.cmd_token in cmdline.replace(b"\0", b" ").decode(errors="replace")
        time.sleep(0.005)
    return False


def _stat_fields(pid: int) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces; split after the last ')'.
    return stat[stat.rindex(")") + 2 :].split()


def _proc_state(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return fields[0] if fields else None


def _start_ticks(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None
