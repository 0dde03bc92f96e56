"""`newsrec up | down | status`: run the local redis-server and Kafka-protocol broker in the background.

Registered on the main typer app by newsrec.cli; the work is done by newsrec.services.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from newsrec import services

StateDirOption = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="Where PIDs, ports and logs are recorded. Default: $NEWSREC_STATE_DIR, else <repo>/var/services.",
        show_default=False,
    ),
]


def up(state_dir: StateDirOption = None) -> None:
    """Start a local redis-server and Tansu broker on 127.0.0.1 and leave them running.

    A service named by REDIS_URL or KAFKA_BOOTSTRAP_SERVERS is used as it is and not started.

    The PIDs are recorded so that `newsrec down` stops exactly these processes; `up` while they run changes nothing.
    """
    state_dir = state_dir or services.default_state_dir()
    already = services.running_endpoints(state_dir)
    try:
        endpoints = already or services.start_services(state_dir)
    except services.ServiceError as exc:
        typer.echo(f"newsrec up: {exc}", err=True)
        raise typer.Exit(code=1) from None
    typer.echo("already running" if already else "started")
    for record, _ in services.recorded_services(state_dir):
        typer.echo(f"  {record.name:<6} {record.url:<28} pid {record.pid:<8} log {record.log_path}")
    typer.echo(f"state: {services.state_file(state_dir)}")
    typer.echo("to use them from another shell:")
    typer.echo(f"  export REDIS_URL={endpoints.redis_url} KAFKA_BOOTSTRAP_SERVERS={endpoints.kafka_bootstrap}")


def down(state_dir: StateDirOption = None) -> None:
    """Stop the services that `newsrec up` started (by their recorded PIDs) and remove the state file.

    Only the recorded PIDs are signalled (SIGTERM, then SIGKILL after 5 s), and only while they are still our processes.

    Nothing running is not an error.
    """
    stopped = services.stop_services(state_dir)
    if not stopped:
        typer.echo("nothing running")
    for record in stopped:
        typer.echo(f"stopped {record.name} (pid {record.pid}, {record.url})")


def status(state_dir: StateDirOption = None) -> None:
    """Show the services recorded by `newsrec up` and whether each is still running. Exit code 1 if any is down."""
    recorded = services.recorded_services(state_dir)
    if not recorded:
        typer.echo("nothing recorded: run `newsrec up`")
        raise typer.Exit(code=1)
    for record, running in recorded:
        typer.echo(f"{record.name:<6} {record.url:<28} pid {record.pid:<8} {'running' if running else 'NOT RUNNING'}")
    if not all(running for _, running in recorded):
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    """Add `up`, `down` and `status` to the given typer app."""
    app.command("up")(up)
    app.command("down")(down)
    app.command("status")(status)
