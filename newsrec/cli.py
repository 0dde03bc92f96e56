"""The `newsrec` command: one entry point whose sub-commands grow with each component."""
from __future__ import annotations

import typer

from newsrec import (cli_data, cli_demo, cli_encoders, cli_models, cli_registry, cli_serve, cli_services,
                     cli_simulate, cli_workers)

app = typer.Typer(help="newsrec: a production news recommender (train, serve, stream).", no_args_is_help=True,
                  pretty_exceptions_enable=False)
app.add_typer(cli_data.app, name="data")
app.add_typer(cli_registry.app, name="registry")
cli_services.register(app)
cli_demo.register(app)
cli_models.register(app)
cli_serve.register(app)
cli_encoders.register(app)
cli_workers.register(app)
cli_simulate.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
