"""Shared CLI options are defined once (cli/options.py) and given to commands as groups by ``with_options``."""

from __future__ import annotations

import inspect
from typing import Annotated, Any

import click
import pytest
import typer
from typer.main import get_command
from typer.testing import CliRunner

from rubrickit.cli import app
from rubrickit.cli.generate import generation
from rubrickit.cli.options import judge_call, ray_scale, run_files, with_options

GROUPS = {
    "score": [judge_call, run_files, ray_scale], "compare": [judge_call, run_files, ray_scale],
    "rank": [judge_call, run_files], "eval": [judge_call, ray_scale], "serve": [judge_call],
    **{f"generate {method}": [generation] for method in ("contrastive", "per", "decompose", "reference", "tail")},
}


def _command(path: str) -> click.Command:
    command = get_command(app)
    for name in path.split():
        command = command.commands[name]  # type: ignore[attr-defined]
    return command


def _names(group: Any) -> list[str]:
    return list(inspect.signature(group).parameters)


@pytest.mark.parametrize("path", list(GROUPS))
def test_every_command_takes_each_of_its_groups_whole_and_once(path: str) -> None:
    names = [param.name for param in _command(path).params]
    for group in GROUPS[path]:
        wanted = _names(group)
        assert all(names.count(name) == 1 for name in wanted), (path, group.__name__)
        where = names.index(wanted[0])
        assert names[where:where + len(wanted)] == wanted, f"{path}: {group.__name__}'s options are kept together"


def test_generate_shows_its_concurrency_default_of_8() -> None:
    param = next(p for p in _command("generate per").params if p.name == "concurrency")
    assert param.default == 8 and param.envvar == "RUBRICKIT_CONCURRENCY"


def test_the_command_gets_the_group_s_bundle_in_place_of_its_parameter() -> None:
    seen: dict[str, Any] = {}

    def pair(left: Annotated[int, typer.Option("--left")] = 1, right: Annotated[int, typer.Option("--right")] = 2,
             ) -> tuple[int, int]:
        return left, right

    demo = typer.Typer()

    @demo.command()
    @with_options(pair, into="both")
    def run(name: Annotated[str, typer.Option("--name")], both: tuple[int, int],
            loud: Annotated[bool, typer.Option("--loud")] = False) -> None:
        seen.update(name=name, both=both, loud=loud)

    assert list(inspect.signature(run).parameters) == ["name", "left", "right", "loud"]
    result = CliRunner().invoke(demo, ["--name", "x", "--right", "5", "--loud"])
    assert result.exit_code == 0, result.output
    assert seen == {"name": "x", "both": (1, 5), "loud": True}


def test_an_option_both_in_the_group_and_the_command_is_refused() -> None:
    def group(force: Annotated[bool, typer.Option("--force")] = False) -> bool:
        return force

    def command(shared: bool, force: Annotated[bool, typer.Option("--force")] = False) -> None:
        """Takes --force twice."""

    with pytest.raises(TypeError, match="force"):
        with_options(group, into="shared")(command)
