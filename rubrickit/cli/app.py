"""The ``rubrickit`` command line: the app and its registrar (STYLE: one module per command group).

Each command parses arguments, calls one public function of :mod:`rubrickit`, and renders with
:mod:`rubrickit.cli.render`. Command modules never import this one; it imports them and registers their commands.
"""

from __future__ import annotations

from typing import Annotated

import typer

from rubrickit.cli import eval as eval_commands
from rubrickit.cli import generate, refine, render, rl, rubrics, scoring
from rubrickit.cli.options import debug_state
from rubrickit.judge import set_run_announcer

app = typer.Typer(
    name="rubrickit",
    help="Rubric authoring and criterion-by-criterion LLM-as-judge scoring.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _main(
    debug: Annotated[
        bool, typer.Option("--debug", envvar="RUBRICKIT_DEBUG", help="Show tracebacks.")
    ] = False,
) -> None:
    debug_state["debug"] = debug
    set_run_announcer(render.note)  # each judge's spec and mode, as the run's header on standard error


for group in (rubrics, scoring, eval_commands, refine, rl):  # the order of ``rubrickit --help``
    app.add_typer(group.commands)
app.add_typer(generate.generate_app, name="generate")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
