"""The CLI reference (docs/cli.md), generated from ``--help`` so it cannot drift from the code.

Regenerate with ``python -m consentgate.cli.reference > docs/cli.md``; a test fails when they differ.
"""

from __future__ import annotations

from typer.testing import CliRunner

from consentgate.cli import app

HELP_ENV = {"COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"}


def command_paths() -> list[list[str]]:
    """Every command as the words that call it, in the order they are registered."""
    paths: list[list[str]] = [[]]
    for command in app.registered_commands:
        assert command.callback is not None
        paths.append([command.name or command.callback.__name__])
    for group in app.registered_groups:
        assert group.name is not None and group.typer_instance is not None
        paths.append([group.name])
        for command in group.typer_instance.registered_commands:
            assert command.callback is not None
            paths.append([group.name, command.name or command.callback.__name__])
    return paths


def render_reference() -> str:
    runner = CliRunner()
    parts = [
        "# consentgate command reference",
        "",
        "Generated from `--help` by `python -m consentgate.cli.reference > docs/cli.md`;",
        "a test checks that it matches the code.",
        "",
    ]
    for path in command_paths():
        result = runner.invoke(app, [*path, "--help"], env=HELP_ENV)
        if result.exit_code != 0:
            raise RuntimeError(f"consentgate {' '.join(path)} --help failed: {result.output}")
        title = " ".join(["consentgate", *path])
        body = "\n".join(line.rstrip() for line in result.output.strip("\n").splitlines())
        parts += [f"## `{title}`", "", "```text", body, "```", ""]
    return "\n".join(parts)


if __name__ == "__main__":
    print(render_reference(), end="")
