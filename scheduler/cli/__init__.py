"""The command line: `scheduler validate | calendar | plan | preview | send | status | lists`.

Exit codes: 0 success, 1 validation or delivery failure, 2 usage error.
"""

import sys
from typing import Annotated

import typer

from scheduler.cli import control, daemons, lists, project, retry, send, status, web
from scheduler.console import err, state
from scheduler.errors import SchedulerError

app = typer.Typer(
    name="scheduler",
    help="Plan campaign days in campaigns.yaml; email subscribers and post to social platforms "
    "on the day.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Every command group, in the order `scheduler --help` lists them. A new command is a module
# with a `register(app)` and one entry here.
COMMAND_MODULES = (project, send, retry, status, lists, control, daemons, web)


@app.callback()
def _global(
    config: Annotated[
        str | None,
        typer.Option(
            "-c",
            "--config",
            help="campaigns.yaml to use [env: SCHEDULER_CONFIG; default: ./campaigns.yaml]",
        ),
    ] = None,
) -> None:
    state.config = config


for _module in COMMAND_MODULES:
    _module.register(app)


def main() -> None:
    try:
        app()
    except SchedulerError as e:
        err.print(f"error: {e}", markup=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
