"""The READMEs' commands run as written on a machine with only `python3` and `make` (after `make sync`).

Every command in a fenced `sh` block, and every inline command (`make ...`, `.venv/bin/...`, `uv run ...`),
must name a program such a machine has: `make` with a target the Makefile defines, `python3`, a file the
repository holds or `make sync` installs (`.venv/bin/...`), or `curl` (the one HTTP client the first steps
use). `docker` and `openssl` only in docker/README.md, which is for a Docker host. The token commands
are run for real.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from parley_common.config import DEV_JWT_SECRET
from parley_common.devstack import banner, credentials
from parley_gateway.identity import TokenVerifier

ROOT = Path(__file__).resolve().parents[1]
READMES = sorted(
    [
        ROOT / "README.md",
        ROOT / "libs/common/README.md",
        ROOT / "deploy/k8s/README.md",
        ROOT / "docker/README.md",
        *(ROOT / "services").glob("*/README.md"),
    ]
)
SYSTEM_PROGRAMS = {"make", "python3", "curl"}
# docker/README.md is for a Docker host (which has openssl), not a development machine.
DOCKER_HOST_PROGRAMS = {"docker", "openssl"}
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
# An inline code span that is a command to type (not a path or a name).
INLINE_COMMAND = re.compile(r"`((?:make|uv run|\.venv/bin/|\.tools/bin/)[^`]*)`")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
# A new user's shell: no JWT settings, and not inside another make (`make test` runs this file; a nested
# make inherits MAKELEVEL/MAKEFLAGS and announces "Entering directory" on stdout).
_MAKE_VARS = ("MAKELEVEL", "MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES")
DEV_SECRET_ENV = {
    key: value
    for key, value in os.environ.items()
    if not key.startswith("PARLEY_JWT") and key not in _MAKE_VARS
}


def _fenced_commands(text: str) -> list[str]:
    commands: list[str] = []
    for language, body in FENCE.findall(text):
        if language not in ("sh", "bash", "shell"):
            continue
        commands += [line for line in body.replace("\\\n", " ").splitlines() if line.strip()]
    return commands


def _programs(command: str) -> list[str]:
    """The programs a command line runs: the first word of each command of its pipelines, lists and
    `$(...)` substitutions (quotes respected, comments dropped, `VAR=value` prefixes skipped)."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True  # words end at blanks and operators only (`URL=mongodb://h:27017` is one)
    commands: list[list[str]] = [[]]
    for token in lexer:
        if set(token) <= set("();<>|&"):
            commands.append([])  # an operator ends a command (a redirection's file is no program)
        else:
            commands[-1].append(token)
    programs: list[str] = []
    for words in commands:
        # `$` before `(` opens a substitution: the shlex word before it, not a program.
        words = [word for word in words if not ASSIGNMENT.match(word) and word != "$"]
        if words:
            programs.append(words[0] if words[0] != "make" else f"make {_make_target(words[1:])}")
    return programs


def _make_target(arguments: list[str]) -> str:
    targets = [arg for arg in arguments if not arg.startswith("-") and "=" not in arg]
    return targets[0] if targets else ""


def _commands() -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for readme in READMES:
        text = readme.read_text()
        name = str(readme.relative_to(ROOT))
        found += [(name, command) for command in _fenced_commands(text)]
        found += [(name, command) for command in INLINE_COMMAND.findall(text)]
    return found


def _makefile_targets() -> set[str]:
    return set(re.findall(r"^([\w.-]+):", (ROOT / "Makefile").read_text(), re.M))


def _missing(readme: str, program: str) -> str | None:
    if program.startswith("make "):
        target = program.removeprefix("make ")
        return None if not target or target in _makefile_targets() else f"no Makefile target {target!r}"
    if program in SYSTEM_PROGRAMS or (program in DOCKER_HOST_PROGRAMS and readme == "docker/README.md"):
        return None
    if "/" in program:
        path = ROOT / program
        return None if path.is_file() and os.access(path, os.X_OK) else f"{program} is not in the repository"
    return f"{program!r} is not on a machine with only python3 and make"


def test_every_readme_command_names_a_program_that_exists() -> None:
    commands = _commands()
    assert any("parley-token" in command for _, command in commands)
    problems = [
        f"{readme}: {command!r}: {problem}"
        for readme, command in commands
        for program in _programs(command)
        if (problem := _missing(readme, program))
    ]
    assert problems == []


def test_the_commands_make_run_prints_name_programs_that_exist() -> None:
    # `make run` shows a new user how to get a token: the first step after the README's `make run`.
    text = banner(8080, "nats://127.0.0.1:4222", Path(".data"), credentials({}))
    commands = [line.strip().removeprefix("or:").strip() for line in text.replace("\\\n", " ").splitlines()]
    commands = [line for line in commands if line.startswith(("TOKEN=", "curl ", "uv ", ".venv/"))]
    problems = [
        f"{command!r}: {problem}"
        for command in commands
        for program in _programs(command)
        if (problem := _missing("make run", program))
    ]
    assert problems == []
    assert len(commands) >= 3


def _verify(token: str, user: str, org: str) -> None:
    """The gateway's own verifier with the development secret accepts it, for that user."""
    principal = TokenVerifier(secret=DEV_JWT_SECRET).verify(token)
    assert (principal.user_id, principal.organization_id) == (user, org)


def test_the_readme_token_command_runs_as_written() -> None:
    readme = (ROOT / "README.md").read_text()
    [line] = [command for command in _fenced_commands(readme) if command.startswith("TOKEN=")]
    # The exact line, in a shell at the repository root, with the development secret.
    result = subprocess.run(
        ["/bin/sh", "-c", f'{line}\nprintf %s "$TOKEN"'],
        cwd=ROOT,
        env=DEV_SECRET_ENV,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    _verify(result.stdout, "alice", "parley-dev")


@pytest.mark.parametrize("command", ["make -s token USER_ID=bob ORG=acme", "make token USER_ID=bob ORG=acme"])
def test_make_token_prints_only_the_token(command: str) -> None:
    result = subprocess.run(
        shlex.split(command),
        cwd=ROOT,
        env=DEV_SECRET_ENV,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    # Only the token on stdout: `TOKEN=$(make -s token ...)` works.
    _verify(result.stdout.strip(), "bob", "acme")
