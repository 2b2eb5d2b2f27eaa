"""``hub run`` builds its command line without importing the installer's commands.

``hub doctor``, ``hub status`` and ``hub provision`` live in modules of their own that
add their subcommand to the parser; the agent's own start-up (``hub run``) must not pay
for importing them (bench/footprint.py measures the start-up and the memory). Every
command is still offered: in ``hub --help`` and when it is asked for.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from agent.cli import build_parser, cmd_run, command_in

INSTALLER_MODULES = ("agent.doctor", "agent.hubstatus", "agent.provision")


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["run", "--config", "hub.toml"], "run"),
        (["-v", "-v", "status", "--json"], "status"),
        (["--verbose", "doctor"], "doctor"),
        (["--help"], None),
        ([], None),
    ],
)
def test_the_command_is_the_first_word_that_is_not_an_option(
    argv: list[str], command: str | None
) -> None:
    assert command_in(argv) == command


def test_hub_run_does_not_import_the_installer_commands() -> None:
    # a fresh interpreter: this test process may have imported them for other tests
    code = (
        "import sys\n"
        "from agent.cli import build_parser, command_in\n"
        "argv = ['-v', 'run', '--config', 'hub.toml']\n"
        "build_parser(command_in(argv)).parse_args(argv)\n"
        f"print([m for m in {INSTALLER_MODULES!r} if m in sys.modules])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"


def test_every_command_is_offered_and_each_parses_as_before() -> None:
    listed = build_parser(None).format_help()
    for name in ("run", "check", "replay", "provision", "doctor", "status"):
        assert f"    {name} " in listed, name
    args = build_parser(command_in(["doctor", "--json"])).parse_args(["doctor", "--json"])
    assert args.json and args.func.__module__ == "agent.doctor"
    args = build_parser(command_in(["status"])).parse_args(["status"])
    assert args.func.__module__ == "agent.hubstatus"
    argv = ["run", "--config", "hub.toml"]
    assert build_parser(command_in(argv)).parse_args(argv).func is cmd_run


def test_an_unknown_command_names_every_known_one(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ended:
        build_parser(command_in(["teleport"])).parse_args(["teleport"])
    assert ended.value.code == 2
    err = capsys.readouterr().err
    assert "'doctor'" in err and "'status'" in err and "'provision'" in err
