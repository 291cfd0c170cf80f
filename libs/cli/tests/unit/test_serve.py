"""`baton serve <service>` (what every service process runs) parses its command alone: the CLI's
subcommands and HTTP client stay out of a service's memory (issue 32)."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import sys
from baton_cli.main import main
try:
    main(["serve", "no-such-service"])
except SystemExit as exit:
    print(exit.code, sorted(m for m in ("httpx", "rich", "baton_cli.client") if m in sys.modules))
"""


def test_serve_loads_none_of_the_cli_client() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    assert done.stdout.split("\n")[0] == "2 []", done.stdout + done.stderr
    assert "unknown service 'no-such-service'; one of: " in done.stderr
    assert "projector" in done.stderr


def test_the_full_cli_still_lists_serve() -> None:
    from baton_cli.main import parser

    args = parser().parse_args(["serve", "projector"])
    assert args.service == ["projector"] and args.fn.__name__ == "cmd_serve"


def test_several_services_and_their_health_ports_are_checked_before_any_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from baton_cli.errors import CliError
    from baton_cli.main import parser
    from baton_cli.serve import cmd_serve

    twice = parser().parse_args(["serve", "planner", "planner"])
    with pytest.raises(CliError, match="a service named twice"):
        cmd_serve(twice)
    unknown = parser().parse_args(["serve", "planner", "nope#2"])
    with pytest.raises(CliError, match="unknown service 'nope#2'"):
        cmd_serve(unknown)
    monkeypatch.setenv("BATON_HEALTH_PORTS", "[9101]")
    with pytest.raises(CliError, match="BATON_HEALTH_PORTS is not a JSON object"):
        cmd_serve(parser().parse_args(["serve", "planner", "worker#2"]))
