"""Shared helpers of the deployment tests: paths, the tools in the virtual environment, YAML."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
KUBERNETES_VERSION = "1.30.0"

Doc = dict[str, Any]


def tool(name: str) -> Path:
    """A command installed in this virtual environment (dev dependency); fails loudly when absent."""
    path = Path(sys.executable).parent / name
    if not path.is_file():
        pytest.fail(
            f"{name} is not installed in {path.parent}: it is a dev dependency of the workspace, "
            "run `uv sync --all-packages` (tests/deploy must not be skipped)."
        )
    return path


def run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=60, check=False, env=env
    )


def load_docs(path: Path) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def kustomization() -> Doc:
    docs = load_docs(K8S / "kustomization.yaml")
    assert len(docs) == 1
    return docs[0]


def deployed_files() -> list[Path]:
    """The manifests `kubectl apply -k deploy/k8s` applies, in kustomization order."""
    return [K8S / name for name in kustomization()["resources"]]


def example_files() -> list[Path]:
    return sorted(K8S.glob("*.example.yaml"))


def deployed() -> list[Doc]:
    return [doc for path in deployed_files() for doc in load_docs(path)]


def of_kind(docs: list[Doc], *kinds: str) -> list[Doc]:
    return [doc for doc in docs if doc["kind"] in kinds]


def workloads() -> list[Doc]:
    return of_kind(deployed(), "Deployment", "StatefulSet")


def workload(name: str) -> Doc:
    found = [w for w in workloads() if w["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one workload named {name}, found {len(found)}"
    return found[0]


def pod_spec(doc: Doc) -> Doc:
    spec: Doc = doc["spec"]["template"]["spec"]
    return spec


def containers(doc: Doc) -> Iterator[Doc]:
    spec = pod_spec(doc)
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def is_parley(container: Doc) -> bool:
    return str(container["image"]).split(":", 1)[0] == "parley"


def config_data() -> dict[str, str]:
    maps = [c for c in of_kind(deployed(), "ConfigMap") if c["metadata"]["name"] == "parley-config"]
    assert len(maps) == 1, "the ConfigMap parley-config must be deployed"
    data: dict[str, str] = maps[0]["data"]
    return data


def workspace_members() -> list[str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    members: list[str] = pyproject["tool"]["uv"]["workspace"]["members"]
    return members


_ENV_LITERAL = re.compile(r"""["'](PARLEY_[A-Z0-9_]+)["']""")


def parley_names_in_code() -> set[str]:
    """Every `"PARLEY_..."` string literal in the sources of the workspace members."""
    names: set[str] = set()
    for member in workspace_members():
        for source in (ROOT / member / "src").rglob("*.py"):
            names.update(_ENV_LITERAL.findall(source.read_text()))
    return names
