"""docker/Dockerfile, checked offline: hadolint, and the invariants a lint cannot know about."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path

from tests.deploy._support import DOCKERFILE, DOCKERIGNORE, ROOT, run, tool, workspace_members

HADOLINT_CONFIG = ROOT / ".hadolint.yaml"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    stage: int  # index of the FROM it belongs to; -1 before the first FROM (global ARGs)


def parse(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and comment lines dropped (as BuildKit does)."""
    instructions: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(keyword, " ".join(args.split()), stage))
    assert not pending, "dangling line continuation"
    return instructions


INSTRUCTIONS = parse(DOCKERFILE.read_text())
FINAL_STAGE = max(i.stage for i in INSTRUCTIONS)


def instructions(keyword: str, stage: int | None = None) -> list[Instruction]:
    return [i for i in INSTRUCTIONS if i.keyword == keyword and (stage is None or i.stage == stage)]


def global_args() -> dict[str, str]:
    values: dict[str, str] = {}
    for arg in instructions("ARG", stage=-1):
        name, _, default = arg.args.partition("=")
        values[name] = default
    return values


def stage_image(stage: int) -> str:
    image = instructions("FROM", stage)[0].args.split()[0]
    return re.sub(r"\$\{(\w+)\}", lambda m: global_args()[m.group(1)], image)


def stage_index(name: str) -> int:
    (found,) = [i.stage for i in instructions("FROM") if i.args.lower().endswith(f" as {name}")]
    return found


def copies(stage: int | None = None) -> list[tuple[list[str], list[str]]]:
    """(flags, sources + destination) of each COPY."""
    result = []
    for instruction in instructions("COPY", stage):
        words = shlex.split(instruction.args)
        result.append(
            ([w for w in words if w.startswith("--")], [w for w in words if not w.startswith("--")])
        )
    return result


def position(predicate: str) -> list[int]:
    return [n for n, i in enumerate(INSTRUCTIONS) if predicate in i.args and i.keyword in ("RUN", "COPY")]


# --- lint --------------------------------------------------------------------------------------


def hadolint(dockerfile: Path) -> tuple[int, str]:
    config = ["--config", str(HADOLINT_CONFIG)] if HADOLINT_CONFIG.exists() else []
    result = run(tool("hadolint"), *config, "--no-color", "--failure-threshold", "style", dockerfile)
    return result.returncode, result.stdout + result.stderr


def test_hadolint_finds_nothing() -> None:
    """Accepted exceptions, if ever needed, go in .hadolint.yaml with the reason beside them."""
    code, output = hadolint(DOCKERFILE)
    assert code == 0, output


def test_hadolint_is_effective(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y gcc\n")
    code, output = hadolint(bad)
    assert code != 0
    assert "DL3007" in output  # `latest` tag


# --- dependencies ------------------------------------------------------------------------------


def uv_syncs() -> list[Instruction]:
    return [i for i in instructions("RUN") if "uv sync" in i.args]


def test_uv_sync_installs_exactly_the_lock() -> None:
    syncs = uv_syncs()
    assert len(syncs) == 2, "one layer of dependencies, one of the workspace members"
    for sync in syncs:
        flags = set(sync.args.split())
        assert {"--frozen", "--no-dev", "--all-packages", "--no-editable"} <= flags, sync.args
        assert sync.stage == stage_index("builder")
    assert "--no-install-workspace" in syncs[0].args.split()
    assert "--no-install-workspace" not in syncs[1].args.split()
    assert "pip install" not in DOCKERFILE.read_text(), "everything comes from uv.lock"


def test_every_workspace_member_is_copied() -> None:
    first_sync, last_sync = (INSTRUCTIONS.index(i) for i in uv_syncs())
    assert not [c for c in copies() if c[1][0] == "."], "no `COPY . .`: it defeats the layer cache"
    for required in ("uv.lock", "pyproject.toml", ".python-version"):
        assert min(position(required), default=first_sync) < first_sync, f"{required} before the first sync"
    members = workspace_members()
    assert members, "no workspace members found in pyproject.toml"
    for member in members:
        pyproject = f"{member}/pyproject.toml"
        assert any(n < first_sync for n in position(pyproject)), f"{pyproject} is not copied before `uv sync`"
        assert any(first_sync < n < last_sync for n in position(f"{member}/src ")), (
            f"{member}/src is not copied"
        )


def test_members_need_only_pyproject_and_src() -> None:
    """What the Dockerfile copies is what hatchling needs to build each member's wheel."""
    for member in workspace_members():
        config = tomllib.loads((ROOT / member / "pyproject.toml").read_text())
        project = config["project"]
        assert "readme" not in project and "license-files" not in project, f"{member}: copy those files too"
        packages = config["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
        assert all(p.startswith("src/") for p in packages), member


def _pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex (Go filepath.Match plus `**`, as Docker reads it)."""
    out = ""
    body = pattern.strip("/")
    while body:
        if body.startswith("**/"):
            out, body = out + "(?:.*/)?", body[3:]
        elif body.startswith("**"):
            out, body = out + ".*", body[2:]
        elif body[0] == "*":
            out, body = out + "[^/]*", body[1:]
        elif body[0] == "?":
            out, body = out + "[^/]", body[1:]
        else:
            out, body = out + re.escape(body[0]), body[1:]
    return re.compile(out)


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether Docker leaves `path` out of the context: it or a parent matches the last rule."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        if any(_pattern(pattern.removeprefix("!")).fullmatch(c) for c in candidates):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_what_the_build_copies() -> None:
    assert DOCKERIGNORE.exists(), ".dockerignore must sit at the root of the build context"
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for needed_out in (".git", ".venv", ".data", "libs/common/src/x/__pycache__", "services/gateway/tests"):
        assert _ignored(needed_out, patterns), f"{needed_out} should not be in the build context"
    for flags, words in copies():
        if any(f.startswith("--from") for f in flags):
            continue
        for source in words[:-1]:
            assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
            assert not _ignored(source, patterns), f"COPY {source} is excluded by .dockerignore"


# --- images and runtime ------------------------------------------------------------------------


def _python_minor() -> str:
    return (ROOT / ".python-version").read_text().strip()


def test_base_images_are_pinned_and_match_the_project_python() -> None:
    minor = _python_minor()
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert f">={minor}" in requires
    builder, final = stage_index("builder"), FINAL_STAGE
    # The venv's `python` is a symlink into the builder's interpreter: same image in both stages.
    assert stage_image(builder) == stage_image(final)
    assert re.fullmatch(rf"python:{re.escape(minor)}-slim-[a-z]+", stage_image(final)), stage_image(final)
    uv_image = stage_image(stage_index("uv"))
    assert re.fullmatch(r"ghcr\.io/astral-sh/uv:\d+\.\d+\.\d+", uv_image), "pin uv to a release"


def test_runtime_stage_is_minimal_and_unprivileged() -> None:
    final = FINAL_STAGE
    froms = [flags for flags, _ in copies(final) if any(f.startswith("--from") for f in flags)]
    assert froms == [["--from=builder"]], "the runtime takes only the virtual environment from the builder"
    assert [words for _, words in copies(final)] == [["/app/.venv", "/app/.venv"]]
    runs = " ".join(i.args for i in instructions("RUN", final))
    for forbidden in ("apt-get", "pip ", "uv ", "gcc", "build-essential"):
        assert forbidden not in runs, f"no {forbidden!r} in the runtime stage"
    (user,) = instructions("USER", final)
    uid, _, gid = user.args.partition(":")
    assert uid.isdigit() and int(uid) != 0, "a numeric non-root user (runAsNonRoot can verify it)"
    assert gid.isdigit() and int(gid) != 0
    env = dict(
        word.split("=", 1) for i in instructions("ENV", final) for word in shlex.split(i.args) if "=" in word
    )
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PATH"].startswith("/app/.venv/bin:")
    assert env["PARLEY_HTTP_HOST"] == "0.0.0.0", "the gateway must listen outside the container's loopback"


def test_command_selects_the_service() -> None:
    (entrypoint,) = instructions("ENTRYPOINT")
    assert json.loads(entrypoint.args) == ["python", "-m"]
    (cmd,) = instructions("CMD")
    (module,) = json.loads(cmd.args)
    assert list(ROOT.glob(f"*/*/src/{module}/__main__.py")), f"CMD {module}: no such service module"
    assert [i.args for i in instructions("EXPOSE")] == ["8080"]
    assert not instructions("HEALTHCHECK"), "Kubernetes probes check health"
    assert global_args()["PYTHON_IMAGE"], "ARG PYTHON_IMAGE needs a default so a plain build works"
