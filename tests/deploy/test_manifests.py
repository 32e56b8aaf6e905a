"""deploy/k8s, checked offline: schemas (kubernetes-validate), invariants, and the settings the code reads."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from parley_common.config import nats_servers

from tests.deploy._support import (
    K8S,
    KUBERNETES_VERSION,
    ROOT,
    Doc,
    config_data,
    containers,
    deployed,
    deployed_files,
    example_files,
    is_parley,
    kustomization,
    load_docs,
    of_kind,
    parley_names_in_code,
    pod_spec,
    run,
    tool,
    workload,
    workloads,
)

PART_OF = "app.kubernetes.io/part-of"
NAME = "app.kubernetes.io/name"
NAMESPACE = "parley"
SECRET = "parley-secrets"
# Images other than Parley's own: pinned to a version line, never `latest`.
PINNED_IMAGES = (
    re.compile(r"nats:2\.(1[1-9]|[2-9]\d)(\.\d+)?-alpine"),  # JetStream features need >= 2.11
    re.compile(r"mongo:[5-9]\.\d+(\.\d+)?"),
)
CLUSTER_SCOPED = {"Namespace"}


def all_files() -> list[Path]:
    return [*deployed_files(), *example_files()]


# --- schemas -----------------------------------------------------------------------------------


def test_every_manifest_passes_kubernetes_validate_strict() -> None:
    files = all_files()
    result = run(tool("kubernetes-validate"), "--strict", "-k", KUBERNETES_VERSION, *files)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # An unknown kind or apiVersion is only a WARN (exit 0) for kubernetes-validate: a typo such as
    # `apps/v2` would otherwise pass. Every resource must have been checked against a schema.
    problems = [line for line in output.splitlines() if not line.startswith("INFO ")]
    assert not problems, "\n".join(problems)
    resources = sum(len(load_docs(path)) for path in files)
    assert output.count(" passed for resource ") == resources, output


def test_kubernetes_validate_rejects_a_broken_manifest(tmp_path: Path) -> None:
    """The validator really is strict: an unknown field fails (guards against a silent no-op)."""
    broken = tmp_path / "broken.yaml"
    broken.write_text((K8S / "gateway.yaml").read_text().replace("readinessProbe:", "readynessProbe:", 1))
    result = run(tool("kubernetes-validate"), "--strict", "-k", KUBERNETES_VERSION, broken)
    assert result.returncode != 0
    assert "readynessProbe" in result.stdout


# --- kustomization -----------------------------------------------------------------------------


def test_kustomization_lists_every_manifest_and_no_example() -> None:
    listed = {path.name for path in deployed_files()}
    for path in deployed_files():
        assert path.is_file(), f"kustomization.yaml lists {path.name}, which does not exist"
    on_disk = {
        path.name
        for path in K8S.glob("*.yaml")
        if path.name != "kustomization.yaml" and not path.name.endswith(".example.yaml")
    }
    assert listed == on_disk, "every manifest but the examples belongs in kustomization.yaml"
    assert kustomization()["namespace"] == NAMESPACE


def test_kubectl_apply_k_ships_no_secret() -> None:
    assert not of_kind(deployed(), "Secret"), "secrets are created by the operator, never applied by -k"
    assert "generators" not in kustomization()
    assert "secretGenerator" not in kustomization()


def test_parley_image_is_overridable_by_kustomize() -> None:
    images = {image["name"]: image for image in kustomization()["images"]}
    assert "parley" in images
    for doc in workloads():
        for container in containers(doc):
            if is_parley(container):
                assert container["image"] == "parley:latest", "kustomize `images:` rewrites this name"


# --- resources ---------------------------------------------------------------------------------


def test_every_resource_is_labelled_and_namespaced() -> None:
    for path in all_files():
        for doc in load_docs(path):
            where = f"{path.name}: {doc['kind']}/{doc['metadata']['name']}"
            labels = doc["metadata"].get("labels", {})
            assert labels.get(PART_OF) == "parley", where
            assert NAME in labels, where
            if doc["kind"] not in CLUSTER_SCOPED:
                assert doc["metadata"].get("namespace") == NAMESPACE, where
            if "template" in doc.get("spec", {}):
                pod_labels = doc["spec"]["template"]["metadata"]["labels"]
                assert pod_labels.get(PART_OF) == "parley", where
                if "selector" in doc["spec"]:  # a Job's is generated
                    selector = doc["spec"]["selector"]["matchLabels"]
                    assert selector.items() <= pod_labels.items(), f"{where}: selector must match its pods"


def test_images_are_parley_or_pinned() -> None:
    for doc in workloads():
        for container in containers(doc):
            image = container["image"]
            assert is_parley(container) or any(p.fullmatch(image) for p in PINNED_IMAGES), (
                f"{doc['metadata']['name']}: image {image!r} is neither parley:* nor a pinned nats/mongo tag"
            )


def _run_as_non_root(doc: Doc, container: Doc) -> bool:
    pod = pod_spec(doc).get("securityContext", {})
    own = container.get("securityContext", {})
    return bool(own.get("runAsNonRoot", pod.get("runAsNonRoot"))) and (
        own.get("runAsUser", pod.get("runAsUser", 1)) != 0
    )


def test_workloads_have_probes_limits_and_run_hardened() -> None:
    deployments = {w["metadata"]["name"] for w in of_kind(workloads(), "Deployment")}
    assert deployments == {"gateway", "conference", "media", "snapshot", "chat"}
    for doc in workloads():
        for container in containers(doc):
            where = f"{doc['metadata']['name']}/{container['name']}"
            assert "readinessProbe" in container, f"{where}: readinessProbe"
            assert "livenessProbe" in container, f"{where}: livenessProbe"
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= resources.get(kind, {}).keys(), f"{where}: resources.{kind}"
            assert _run_as_non_root(doc, container), f"{where}: runAsNonRoot"
            own = container["securityContext"]
            assert own["allowPrivilegeEscalation"] is False, where
            assert own["readOnlyRootFilesystem"] is True, where
            assert own["capabilities"]["drop"] == ["ALL"], where
            # The namespace enforces the `restricted` Pod Security Standard, which requires this.
            assert pod_spec(doc)["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
            assert pod_spec(doc)["automountServiceAccountToken"] is False, where


def test_parley_pods_run_as_the_image_user_with_a_writable_tmp() -> None:
    dockerfile_user = re.search(r"^USER (\d+):(\d+)$", (ROOT / "docker" / "Dockerfile").read_text(), re.M)
    assert dockerfile_user
    for doc in workloads():
        for container in containers(doc):
            if not is_parley(container):
                continue
            pod = pod_spec(doc)
            assert str(pod["securityContext"]["runAsUser"]) == dockerfile_user.group(1)
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{doc['metadata']['name']}: /tmp must be writable (emptyDir)"
            volume = next(v for v in pod["volumes"] if v["name"] == mounts["/tmp"])
            assert "emptyDir" in volume


def test_service_modules_exist() -> None:
    """`args` is the module run by the image's `python -m`: it must have a __main__."""
    mains = {path.parent.name for path in ROOT.glob("*/*/src/*/__main__.py")}
    for doc in workloads():
        for container in containers(doc):
            if is_parley(container):
                (module,) = container["args"]
                assert module in mains, f"{doc['metadata']['name']}: no {module}/__main__.py in the workspace"


def test_pod_disruption_budgets_cover_gateway_and_conference() -> None:
    budgets = of_kind(deployed(), "PodDisruptionBudget")
    for name in ("gateway", "conference", "snapshot"):
        doc = workload(name)
        pod_labels = doc["spec"]["template"]["metadata"]["labels"]
        matching = [b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()]
        assert len(matching) == 1, f"{name}: exactly one PodDisruptionBudget"
        assert 0 < matching[0]["spec"]["minAvailable"] < doc["spec"]["replicas"], name


# --- services and ports ------------------------------------------------------------------------


def _pods_of(service: Doc) -> list[Doc]:
    selector = service["spec"]["selector"]
    return [w for w in workloads() if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()]


def _container_ports(doc: Doc) -> dict[str | int, int]:
    ports: dict[str | int, int] = {}
    for container in containers(doc):
        for port in container.get("ports", []):
            ports[port["containerPort"]] = port["containerPort"]
            if "name" in port:
                ports[port["name"]] = port["containerPort"]
    return ports


def service_port(name: str, port: int | str) -> int:
    """The container port a Service's port reaches, checking that its pods expose it."""
    (service,) = [s for s in of_kind(deployed(), "Service") if s["metadata"]["name"] == name]
    (spec,) = [p for p in service["spec"]["ports"] if port in (p["port"], p.get("name"))]
    (pods,) = _pods_of(service)
    target = spec.get("targetPort", spec["port"])
    assert target in _container_ports(pods), f"service {name}: targetPort {target} not exposed by its pods"
    return _container_ports(pods)[target]


def test_every_service_targets_a_port_of_its_pods() -> None:
    for service in of_kind(deployed(), "Service"):
        name = service["metadata"]["name"]
        assert len(_pods_of(service)) == 1, f"service {name} must select exactly one workload's pods"
        for port in service["spec"]["ports"]:
            service_port(name, port["port"])


def test_gateway_service_reaches_the_gateway_http_port() -> None:
    (service,) = [s for s in of_kind(deployed(), "Service") if s["metadata"]["name"] == "gateway"]
    assert service["spec"]["type"] == "ClusterIP"
    assert [p["port"] for p in service["spec"]["ports"]] == [80]
    assert _pods_of(service) == [workload("gateway")]
    assert service_port("gateway", 80) == int(config_data()["PARLEY_HTTP_PORT"]) == 8080


def test_network_policies_name_existing_ports() -> None:
    for policy in of_kind(deployed(), "NetworkPolicy"):
        selector = policy["spec"]["podSelector"]["matchLabels"]
        (pods,) = [
            w for w in workloads() if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        for rule in policy["spec"]["ingress"]:
            for port in rule["ports"]:
                assert port["port"] in _container_ports(pods), policy["metadata"]["name"]


def test_statefulsets_have_a_headless_governing_service_and_a_volume_template() -> None:
    services = {s["metadata"]["name"]: s for s in of_kind(deployed(), "Service")}
    for doc in of_kind(workloads(), "StatefulSet"):
        governing = services[doc["spec"]["serviceName"]]
        assert governing["spec"]["clusterIP"] == "None"
        (claim,) = doc["spec"]["volumeClaimTemplates"]
        mounts = [m["name"] for c in containers(doc) for m in c.get("volumeMounts", [])]
        assert claim["metadata"]["name"] in mounts


# --- settings ----------------------------------------------------------------------------------


def _secret_example() -> tuple[Doc, set[str]]:
    """The Secret template and every key it documents, commented-out optional ones included."""
    path = K8S / "secret.example.yaml"
    (secret,) = load_docs(path)
    documented = set(secret["stringData"]) | set(
        re.findall(r"^\s*#\s*(PARLEY_[A-Z0-9_]+):", path.read_text(), re.M)
    )
    return secret, documented


def _env(container: Doc) -> dict[str, Doc]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def manifest_parley_names() -> set[str]:
    names = set(config_data())
    names |= _secret_example()[1]
    for doc in workloads():
        for container in containers(doc):
            for name, entry in _env(container).items():
                names.add(name)
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    names.add(ref["key"])
    return {name for name in names if name.startswith("PARLEY_")}


def test_every_parley_variable_in_the_manifests_is_read_by_the_code() -> None:
    """A renamed or removed setting breaks this test instead of being silently ignored."""
    in_code = parley_names_in_code()
    assert {"PARLEY_NATS_URL", "PARLEY_JWT_SECRET", "PARLEY_DATA_KEY"} <= in_code, "the source scan is broken"
    unknown = manifest_parley_names() - in_code
    assert not unknown, f"set in deploy/k8s but read nowhere in the code: {sorted(unknown)}"


def test_parley_pods_read_the_configmap() -> None:
    for doc in workloads():
        for container in containers(doc):
            if is_parley(container):
                refs = [e["configMapRef"]["name"] for e in container["envFrom"] if "configMapRef" in e]
                assert refs == ["parley-config"], doc["metadata"]["name"]


def test_configmap_fits_a_cluster() -> None:
    data = config_data()
    assert all(isinstance(value, str) for value in data.values()), "ConfigMap values must be strings"
    assert data["PARLEY_HTTP_HOST"] == "0.0.0.0"
    # A 429 (optional service down) is a failed readiness probe for Kubernetes.
    assert data["PARLEY_OPTIONAL_SERVICES"] == ""
    assert "conference" in data["PARLEY_ESSENTIAL_SERVICES"].split(",")

    # Every server of the NATS StatefulSet, by its stable name through the headless Service.
    for url in nats_servers(data["PARLEY_NATS_URL"]):
        nats = urlsplit(url)
        assert nats.scheme == "nats"
        assert nats.hostname and nats.port
        pod, governing = nats.hostname.split(".", 1)
        assert pod in {f"nats-{i}" for i in range(workload("nats")["spec"]["replicas"])}
        assert workload("nats")["spec"]["serviceName"] == governing
        assert service_port(governing, nats.port) == 4222
        assert workload("nats")["kind"] == "StatefulSet"

    # MongoDB is required on Kubernetes: SQLite would be one database per pod.
    mongo = urlsplit(data["PARLEY_MONGO_URL"])
    assert mongo.scheme == "mongodb"
    for member in mongo.netloc.split(","):
        host, _, port = member.partition(":")
        pod, governing = host.split(".", 1)
        assert pod in {f"mongodb-{i}" for i in range(workload("mongodb")["spec"]["replicas"])}
        assert workload("mongodb")["spec"]["serviceName"] == governing
        assert service_port(governing, int(port or 27017)) == 27017
    assert "PARLEY_DATA_DIR" not in data, "no pod-local SQLite on Kubernetes"


def test_secrets_are_required_where_a_development_default_would_apply() -> None:
    """Unset, PARLEY_JWT_SECRET and PARLEY_DATA_KEY fall back to public development values.

    Every service that seals what it pushes (conference, snapshot) needs the gateway's PARLEY_DATA_KEY: one
    sealing with the development key pushes events the gateway cannot open.
    """
    required = {
        "gateway": {"PARLEY_JWT_SECRET", "PARLEY_DATA_KEY"},
        "conference": {"PARLEY_DATA_KEY"},
        "snapshot": {"PARLEY_DATA_KEY", "PARLEY_SNAPSHOT_SIGNING_KEY"},
    }
    for name, keys in required.items():
        (container,) = containers(workload(name))
        env = _env(container)
        for key in keys:
            ref = env[key]["valueFrom"]["secretKeyRef"]
            assert (ref["name"], ref["key"]) == (SECRET, key), f"{name}: {key}"
            assert ref.get("optional", False) is False, f"{name}: {key} must be required"


def test_secret_references_match_the_template() -> None:
    secret, documented = _secret_example()
    assert secret["metadata"]["name"] == SECRET
    assert "data" not in secret
    for key, value in secret["stringData"].items():
        assert "REPLACE_ME" in value, f"secret.example.yaml: {key} must be a REPLACE_ME placeholder"
    for doc in workloads():
        for container in containers(doc):
            for entry in container.get("env", []):
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                if ref is None:
                    continue
                assert ref["name"] == SECRET
                assert ref["key"] in documented, f"{ref['key']} is not documented in secret.example.yaml"
                if not ref.get("optional", False):
                    assert ref["key"] in secret["stringData"], (
                        f"required {ref['key']} missing from the template"
                    )


# --- NATS --------------------------------------------------------------------------------------


def _nats_conf() -> str:
    (config,) = [c for c in of_kind(deployed(), "ConfigMap") if c["metadata"]["name"] == "nats-config"]
    text: str = config["data"]["nats.conf"]
    return text


def test_nats_runs_jetstream_from_the_mounted_config() -> None:
    doc = workload("nats")
    (container,) = containers(doc)
    assert container["command"] == ["nats-server"]
    assert container["args"] == ["--config", "/etc/nats/nats.conf"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(doc)["volumes"]}
    assert volumes[mounts["/etc/nats"]]["configMap"]["name"] == "nats-config"
    conf = _nats_conf()
    assert re.search(r"^\s*store_dir:\s*/data\s*$", conf, re.M)
    assert mounts["/data"] == doc["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
    ports = _container_ports(doc)
    assert f"listen: 0.0.0.0:{ports['client']}" in conf
    assert f"http: 0.0.0.0:{ports['monitor']}" in conf
    env = _env(container)
    for variable in re.findall(r"\$([A-Z_]+)", conf):
        assert variable in env, f"nats.conf uses ${variable}, which the container does not set"


def test_nats_config_is_accepted_by_nats_server(tmp_path: Path) -> None:
    conf = tmp_path / "nats.conf"
    conf.write_text(_nats_conf())
    result = run(tool("nats-server"), "--config", conf, "-t", env={**os.environ, "POD_NAME": "nats-0"})
    assert result.returncode == 0, result.stdout + result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _nats_routes() -> list[str]:
    conf = _nats_conf()
    block = re.search(r"routes:\s*\[(.*?)\]", conf, re.S)
    assert block, "nats.conf has no cluster routes"
    return block.group(1).split()


def test_nats_probe_paths_answer_on_a_real_cluster(tmp_path: Path) -> None:
    """Starts three nats-servers with the manifest's config (ports, routes and stores moved to loopback),
    as the StatefulSet's pods, and hits every probe on each once they formed the cluster."""
    (container,) = containers(workload("nats"))
    paths = [
        container[probe]["httpGet"]["path"] for probe in ("startupProbe", "readinessProbe", "livenessProbe")
    ]
    assert any("js-enabled-only=true" in path for path in paths)
    replicas = workload("nats")["spec"]["replicas"]
    clients = [_free_port() for _ in range(replicas)]
    monitors = [_free_port() for _ in range(replicas)]
    routes = [_free_port() for _ in range(replicas)]
    servers = []
    try:
        for i in range(replicas):
            conf = _nats_conf()
            conf = conf.replace("listen: 0.0.0.0:4222", f"listen: 127.0.0.1:{clients[i]}")
            conf = conf.replace("http: 0.0.0.0:8222", f"http: 127.0.0.1:{monitors[i]}")
            conf = conf.replace("listen: 0.0.0.0:6222", f"listen: 127.0.0.1:{routes[i]}")
            for j in range(replicas):
                route = f"nats://nats-{j}.nats-headless.parley.svc.cluster.local:6222"
                assert route in conf, route
                conf = conf.replace(route, f"nats://127.0.0.1:{routes[j]}")
            conf = re.sub(r"store_dir:\s*/data", f"store_dir: {tmp_path / f'data-{i}'}", conf)
            (tmp_path / f"nats-{i}.conf").write_text(conf)
            servers.append(
                subprocess.Popen(
                    [str(tool("nats-server")), "--config", str(tmp_path / f"nats-{i}.conf")],
                    env={**os.environ, "POD_NAME": f"nats-{i}"},
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for monitor in monitors:
            for path in paths:
                deadline = time.monotonic() + 20
                while True:
                    try:
                        with urllib.request.urlopen(f"http://127.0.0.1:{monitor}{path}", timeout=2) as reply:
                            assert reply.status == 200, path
                            break
                    except (urllib.error.URLError, ConnectionError):
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.1)
        # The servers route to each other: each sees the other two.
        with urllib.request.urlopen(f"http://127.0.0.1:{monitors[0]}/routez", timeout=2) as reply:
            names = {r.get("remote_name") for r in json.load(reply)["routes"]}
        assert {f"nats-{i}" for i in range(1, replicas)} <= names, names
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(timeout=10)


def test_nats_is_a_three_server_jetstream_cluster() -> None:
    doc = workload("nats")
    assert doc["spec"]["replicas"] == 3
    # A quorum is needed before any server is healthy: the pods start together.
    assert doc["spec"]["podManagementPolicy"] == "Parallel"
    conf = _nats_conf()
    assert re.search(r"^\s*server_name:\s*\$POD_NAME\s*$", conf, re.M)
    assert re.search(r"^\s*name:\s*parley\s*$", conf, re.M), "the cluster is named"
    governing = doc["spec"]["serviceName"]
    cluster_port = _container_ports(doc)["cluster"]
    assert f"listen: 0.0.0.0:{cluster_port}" in conf
    expected = [f"nats://nats-{i}.{governing}.{NAMESPACE}.svc.cluster.local:{cluster_port}" for i in range(3)]
    assert _nats_routes() == expected
    assert service_port(governing, "cluster") == cluster_port
    # Every stream, bucket and object store in one copy per server.
    assert config_data()["PARLEY_NATS_REPLICAS"] == str(doc["spec"]["replicas"])
    assert len(nats_servers(config_data()["PARLEY_NATS_URL"])) == 3
    # A drain takes at most one server (the other two keep the quorum).
    (budget,) = [b for b in of_kind(deployed(), "PodDisruptionBudget") if b["metadata"]["name"] == "nats"]
    assert budget["spec"]["maxUnavailable"] == 1
    # Routes are admitted between the NATS pods.
    (policy,) = [p for p in of_kind(deployed(), "NetworkPolicy") if p["metadata"]["name"] == "nats"]
    assert any(
        port["port"] == "cluster" and rule["from"][0]["podSelector"]["matchLabels"].get(NAME) == "nats"
        for rule in policy["spec"]["ingress"]
        for port in rule["ports"]
    )


def test_mongodb_is_a_three_member_replica_set_initiated_once() -> None:
    doc = workload("mongodb")
    assert doc["spec"]["replicas"] == 3
    (container,) = containers(doc)
    args = container["args"]
    replica_set = args[args.index("--replSet") + 1]
    url = urlsplit(config_data()["PARLEY_MONGO_URL"])
    assert parse_qs(url.query)["replicaSet"] == [replica_set]
    governing = doc["spec"]["serviceName"]
    members = [f"mongodb-{i}.{governing}:27017" for i in range(3)]
    assert url.netloc.split(",") == members
    (job,) = [j for j in of_kind(deployed(), "Job") if j["metadata"]["name"] == "mongodb-rs-init"]
    (init,) = job["spec"]["template"]["spec"]["containers"]
    script = init["command"][-1]
    assert f'_id: "{replica_set}"' in script and "rs.initiate(" in script
    assert "NotYetInitialized" in script, "initiate only a set not initiated yet (idempotent)"
    for i, member in enumerate(members):
        assert f'{{_id: {i}, host: "{member}"}}' in script
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure"
    assert _run_as_non_root(job, init)
    assert init["securityContext"]["readOnlyRootFilesystem"] is True
    assert init["image"] == container["image"]


# --- the conference probe ----------------------------------------------------------------------


def _conference_probe() -> list[str]:
    (container,) = containers(workload("conference"))
    commands = [container[p]["exec"]["command"] for p in ("startupProbe", "readinessProbe", "livenessProbe")]
    assert commands[0] == commands[1] == commands[2]
    command: list[str] = commands[0]
    return command


@pytest.mark.parametrize("name", ["media", "snapshot", "chat"])
def test_media_probes_are_the_conference_probe(name: str) -> None:
    (container,) = containers(workload(name))
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["exec"]["command"] == _conference_probe(), probe


def test_conference_probe_watches_the_configured_nats_port() -> None:
    command = _conference_probe()
    assert command[:2] == ["grep", "-qE"]
    (port_hex,) = re.findall(r":([0-9A-F]{4}) 01 ", command[2])
    ports = {urlsplit(url).port for url in nats_servers(config_data()["PARLEY_NATS_URL"])}
    assert ports == {int(port_hex, 16)}, "the probe's hex port must be PARLEY_NATS_URL's"


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc/net/tcp")
def test_conference_probe_detects_an_established_connection() -> None:
    """Runs the probe command against this machine's real /proc/net/tcp with a live connection."""
    command = _conference_probe()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        probe = [*command[:2], re.sub(r":[0-9A-F]{4} 01 ", f":{port:04X} 01 ", command[2]), *command[3:]]
        assert subprocess.run(probe, check=False).returncode == 1, "no connection yet"
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = listener.accept()
            with accepted:
                assert client.fileno() >= 0
                assert subprocess.run(probe, check=False).returncode == 0, "connection not detected"


def test_chat_runs_one_replica_replaced_by_recreate() -> None:
    """The chat service serialises commands in its process (no cross-replica version check yet): two pods,
    even for a rolling update's moment, could both decide on the same room."""
    doc = workload("chat")
    assert doc["spec"]["replicas"] == 1
    assert doc["spec"]["strategy"]["type"] == "Recreate"
    (container,) = containers(doc)
    assert container["args"] == ["parley_chat"]


# --- metrics -----------------------------------------------------------------------------------

PARLEY_DEPLOYMENTS = ("gateway", "conference", "media", "snapshot", "chat")


def test_every_parley_deployment_is_scraped_on_a_port_its_pod_exposes() -> None:
    """Prometheus finds every service by its pod annotations, on the port the service serves /metrics on:
    the gateway's HTTP port, the others' PARLEY_METRICS_PORT (the ConfigMap's, on every interface)."""
    data = config_data()
    assert data["PARLEY_METRICS_HOST"] == "0.0.0.0"
    deployments = {
        d["metadata"]["name"]: d for d in of_kind(deployed(), "Deployment") if is_parley_workload(d)
    }
    assert set(deployments) == set(PARLEY_DEPLOYMENTS)
    for name, doc in deployments.items():
        annotations = doc["spec"]["template"]["metadata"].get("annotations", {})
        assert annotations.get("prometheus.io/scrape") == "true", name
        assert annotations.get("prometheus.io/path") == "/metrics", name
        port = int(annotations["prometheus.io/port"])
        assert port in _container_ports(doc), f"{name}: scrape port {port} is not a container port"
        expected = data["PARLEY_HTTP_PORT"] if name == "gateway" else data["PARLEY_METRICS_PORT"]
        assert port == int(expected), name


def is_parley_workload(doc: Doc) -> bool:
    return any(is_parley(container) for container in containers(doc))
