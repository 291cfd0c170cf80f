"""Static checks of the deployment files: Dockerfile, docker-compose.yml, deploy/.

No Docker engine or cluster is needed. Where `kubectl` (kustomize) or `nats-server` is on the
machine, the kustomization is also built and the NATS config is tested by the real tools.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
SERVICES = ["gateway", "planner", "executor", "worker", "projector", "hitl", "scheduler",
            "webhook", "calendar"]  # fmt: skip
IMAGE = "ghcr.io/baton-engine/baton"
# Files in deploy/k8s that are deliberately not applied by the kustomization.
NOT_IN_KUSTOMIZATION = {"kustomization.yaml", "postgres-cnpg.example.yaml"}


# ----------------------------------------------------------------------------------- helpers


def load_all(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def yaml_files() -> list[Path]:
    files = [ROOT / "docker-compose.yml", *sorted((ROOT / "deploy").rglob("*.yaml"))]
    files += sorted((ROOT / "deploy").rglob("*.yml"))
    return files


def kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


def manifests() -> list[dict[str, Any]]:
    """Every object the kustomization applies, in file order."""
    docs: list[dict[str, Any]] = []
    for name in kustomization()["resources"]:
        docs.extend(load_all(K8S / name))
    return docs


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in manifests() if d.get("kind") == kind]


def by_name(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in of_kind(kind)}


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    match = selector.get("matchLabels") or selector
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


def resolve_port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    for p in container.get("ports", []):
        if p.get("name") == port:
            return int(p["containerPort"])
    raise AssertionError(f"container {container['name']} has no port named {port!r}")


def env_value(container: dict[str, Any], name: str) -> str | None:
    for e in container.get("env", []):
        if e["name"] == name:
            return e.get("value")
    return None


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per logical line: continuations joined, comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):  # comment inside a continued instruction
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def workspace_members() -> list[str]:
    return sorted(
        str(p.parent.relative_to(ROOT))
        for pattern in ("libs/*/pyproject.toml", "services/*/pyproject.toml")
        for p in ROOT.glob(pattern)
    )


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


# ------------------------------------------------------------------------------------- YAML


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_yaml_file_parses(path: Path) -> None:
    docs = load_all(path)
    assert docs, f"{path} is empty"
    for doc in docs:
        assert isinstance(doc, dict), f"{path}: a document is not a mapping"


# -------------------------------------------------------------------------------- kustomize


def test_kustomization_lists_only_existing_files() -> None:
    resources = kustomization()["resources"]
    assert len(resources) == len(set(resources)), "duplicate resources"
    for name in resources:
        assert (K8S / name).is_file(), f"kustomization lists missing file {name}"


def test_kustomization_applies_every_manifest_but_the_optional_ones() -> None:
    listed = set(kustomization()["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - NOT_IN_KUSTOMIZATION
    assert on_disk == listed, (
        f"not listed: {on_disk - listed}; listed, not on disk: {listed - on_disk}"
    )
    assert "postgres-cnpg.example.yaml" not in listed  # needs the CloudNativePG CRDs
    assert "secret.example.yaml" in listed
    assert (K8S / "postgres-cnpg.example.yaml").is_file()


def test_kustomization_namespace_and_image_override() -> None:
    k = kustomization()
    assert k["namespace"] == "baton"
    assert any(i["name"] == IMAGE for i in k.get("images", [])), "image not overridable via images:"
    ns = by_name("Namespace")
    assert "baton" in ns


def test_every_manifest_has_api_version_kind_and_name() -> None:
    for doc in manifests():
        assert doc.get("apiVersion") and doc.get("kind"), doc
        assert doc.get("metadata", {}).get("name"), doc


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) not installed")
def test_kustomize_builds(tmp_path: Path) -> None:
    # as an operator does it: the keys made first (`baton nats-keys --out deploy/k8s/nats-keys`)
    from baton_common.busauth import GRANTS, write_auth

    k8s = tmp_path / "k8s"
    shutil.copytree(K8S, k8s, ignore=shutil.ignore_patterns("nats-keys"))
    write_auth(k8s / "nats-keys", sorted(GRANTS), "baton", "BATON_EVENTS")
    result = subprocess.run(
        ["kubectl", "kustomize", str(k8s)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    built = [d for d in yaml.safe_load_all(result.stdout) if d]
    kinds = {d["kind"] for d in built}
    assert {"Deployment", "StatefulSet", "Service", "PodDisruptionBudget"} <= kinds
    assert {"NetworkPolicy", "Secret"} <= kinds
    secrets = {d["metadata"]["name"]: d for d in built if d["kind"] == "Secret"}
    assert set(secrets["baton-nats-keys"]["data"]) == {f"{s}.nk" for s in SERVICES} | {
        "control.key"
    }
    assert all(d["metadata"].get("namespace") == "baton" for d in built if d["kind"] != "Namespace")


# ------------------------------------------------------------------------------ Deployments


def test_one_deployment_per_service() -> None:
    assert set(by_name("Deployment")) == set(SERVICES)


@pytest.mark.parametrize("service", SERVICES)
def test_deployment_is_production_ready(service: str) -> None:
    dep = by_name("Deployment")[service]
    pod = dep["spec"]["template"]["spec"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert selects(dep["spec"]["selector"], labels), "selector doesn't match the pod labels"
    assert pod.get("terminationGracePeriodSeconds") == 60

    (container,) = pod["containers"]
    assert container["image"].split(":")[0] == IMAGE
    assert container.get("args") == ["serve", service]

    # Probes: liveness /healthz and readiness /readyz on the port the service listens on.
    port = 8080 if service == "gateway" else 8081
    port_env = "BATON_HTTP_PORT" if service == "gateway" else "BATON_HEALTH_PORT"
    assert env_value(container, port_env) == str(port)
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = container[probe]["httpGet"]
        assert get["path"] == path, probe
        assert resolve_port(container, get["port"]) == port, probe

    res = container["resources"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(res[kind]), f"{kind} incomplete"

    pod_sc = pod.get("securityContext", {})
    ctr_sc = container.get("securityContext", {})
    assert pod_sc.get("runAsNonRoot") is True or ctr_sc.get("runAsNonRoot") is True
    assert (ctr_sc.get("runAsUser") or pod_sc.get("runAsUser") or 1) != 0
    assert ctr_sc.get("allowPrivilegeEscalation") is False

    # Config: the ConfigMap, and DATABASE_URL from the Secret.
    config_maps = {
        e["configMapRef"]["name"] for e in container.get("envFrom", []) if "configMapRef" in e
    }
    assert "baton-config" in by_name("ConfigMap")
    assert "baton-config" in config_maps
    db = next(e for e in container["env"] if e["name"] == "DATABASE_URL")
    assert db["valueFrom"]["secretKeyRef"]["name"] in by_name("Secret")

    # Writable mounts for every path the read-only root filesystem needs.
    if ctr_sc.get("readOnlyRootFilesystem"):
        mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
        assert {"/data", "/tmp"} <= mounts


@pytest.mark.parametrize("service", SERVICES)
def test_deployment_has_a_matching_pdb(service: str) -> None:
    labels = by_name("Deployment")[service]["spec"]["template"]["metadata"]["labels"]
    pdbs = [p for p in of_kind("PodDisruptionBudget") if selects(p["spec"]["selector"], labels)]
    assert len(pdbs) == 1, f"{service}: {len(pdbs)} PDBs select its pods"
    spec = pdbs[0]["spec"]
    assert spec.get("minAvailable") == 1 or spec.get("maxUnavailable") == 1


def test_gateway_service_targets_gateway_pods() -> None:
    svc = by_name("Service")["gateway"]
    labels = by_name("Deployment")["gateway"]["spec"]["template"]["metadata"]["labels"]
    assert selects(svc["spec"]["selector"], labels)
    container = by_name("Deployment")["gateway"]["spec"]["template"]["spec"]["containers"][0]
    assert any(resolve_port(container, p["targetPort"]) == 8080 for p in svc["spec"]["ports"])


def test_webhook_service_exposes_the_inbound_port() -> None:
    svc = by_name("Service")["webhook"]
    dep = by_name("Deployment")["webhook"]
    assert selects(svc["spec"]["selector"], dep["spec"]["template"]["metadata"]["labels"])
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    assert env_value(container, "BATON_WEBHOOK_PORT") == "8090"
    assert env_value(container, "BATON_WEBHOOK_HOST") == "0.0.0.0"
    assert any(resolve_port(container, p["targetPort"]) == 8090 for p in svc["spec"]["ports"])
    ports = compose()["services"]["webhook"]["ports"]
    assert any(str(p).endswith("8090:8090") for p in ports)


def test_hpas_scale_worker_and_executor_on_cpu() -> None:
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in of_kind("HorizontalPodAutoscaler")}
    assert {"worker", "executor"} <= set(hpas)
    for name, hpa in hpas.items():
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
        assert name in by_name("Deployment")
        assert any(m["resource"]["name"] == "cpu" for m in hpa["spec"]["metrics"])
        # The HPA owns the replica count: the Deployment must not fight it on re-apply.
        assert "replicas" not in by_name("Deployment")[name]["spec"]
    assert hpas["worker"]["spec"]["minReplicas"] == 2
    assert hpas["worker"]["spec"]["maxReplicas"] == 20


# ------------------------------------------------------------------------------------- NATS


def nats_conf() -> str:
    return by_name("ConfigMap")["nats-config"]["data"]["nats.conf"]


def test_nats_statefulset_is_a_three_node_jetstream_cluster() -> None:
    sts = by_name("StatefulSet")["nats"]
    spec = sts["spec"]
    assert spec["replicas"] == 3
    (container,) = spec["template"]["spec"]["containers"]
    image, _, tag = container["image"].partition(":")
    assert image == "nats"
    assert tuple(int(x) for x in tag.split(".")[:2]) >= (2, 10), "needs NATS >= 2.10"

    # Headless governing Service, and the client Service on 4222.
    services = by_name("Service")
    headless = services[spec["serviceName"]]
    assert headless["spec"].get("clusterIP") == "None"
    pod_labels = spec["template"]["metadata"]["labels"]
    assert selects(headless["spec"]["selector"], pod_labels)
    client = services["nats"]
    assert selects(client["spec"]["selector"], pod_labels)
    assert any(p["port"] == 4222 for p in client["spec"]["ports"])
    assert "nats://nats:4222" == by_name("ConfigMap")["baton-config"]["data"]["NATS_URL"]

    # JetStream file store on the PVC from volumeClaimTemplates.
    conf = nats_conf()
    assert re.search(r"^\s*jetstream\s*[{:]", conf, re.M), "JetStream not enabled"
    store = re.search(r"store_dir:\s*\"?([^\s\"]+)", conf)
    assert store, "no store_dir"
    claims = {c["metadata"]["name"] for c in spec["volumeClaimTemplates"]}
    pvc_mounts = [m["mountPath"] for m in container["volumeMounts"] if m["name"] in claims]
    assert any(store.group(1).startswith(m) for m in pvc_mounts), "store_dir not on the PVC"

    # The config file the server is started with is the ConfigMap's.
    conf_mount = next(
        m["mountPath"]
        for m in container["volumeMounts"]
        for v in spec["template"]["spec"]["volumes"]
        if v["name"] == m["name"] and v.get("configMap", {}).get("name") == "nats-config"
    )
    assert f"{conf_mount}/nats.conf" in container["args"]

    # Routes to every pod through the headless Service.
    for i in range(3):
        assert f"nats-{i}.{spec['serviceName']}" in conf, f"no route to nats-{i}"

    assert any(
        selects(p["spec"]["selector"], pod_labels) for p in of_kind("PodDisruptionBudget")
    ), "no PDB for NATS"


@pytest.mark.skipif(
    not (shutil.which("nats-server") or (Path(sys.executable).parent / "nats-server").exists()),
    reason="nats-server not installed",
)
def test_nats_conf_is_accepted_by_nats_server(tmp_path: Path) -> None:
    binary = shutil.which("nats-server") or str(Path(sys.executable).parent / "nats-server")
    # Point the in-pod paths at a temp dir; `-t` only parses and checks the file.
    conf = nats_conf().replace("/data/", f"{tmp_path}/").replace("/var/run/nats/", f"{tmp_path}/")
    (tmp_path / "nats.conf").write_text(conf)
    # the authorization it includes, as `baton nats-keys` makes it for the Secret
    from baton_common.busauth import GRANTS, write_auth

    write_auth(tmp_path / "auth", sorted(GRANTS), "baton", "BATON_EVENTS")
    result = subprocess.run(
        [binary, "-t", "-c", str(tmp_path / "nats.conf")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SERVER_NAME": "nats-0"},
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------------------ Compose


def test_compose_runs_every_service_from_the_dockerfile() -> None:
    services = compose()["services"]
    assert {"nats", "postgres", "otel-collector", *SERVICES} <= set(services)
    for name in SERVICES:
        svc = services[name]
        build = svc["build"]
        context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
        dockerfile = (
            "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        )
        assert (context / dockerfile).resolve() == (ROOT / "Dockerfile").resolve(), name
        command = svc["command"]
        command = shlex.split(command) if isinstance(command, str) else command
        assert command == ["serve", name], name
        env = svc["environment"]
        assert env["NATS_URL"].startswith("nats://nats:")
        assert (
            env["DATABASE_URL"].startswith("postgresql://") and "@postgres:" in env["DATABASE_URL"]
        )
        assert "otel-collector:4318" in env["OTEL_EXPORTER_OTLP_ENDPOINT"]  # OTLP HTTP/protobuf
        if name != "gateway":
            assert str(env["BATON_HEALTH_PORT"]) == "8081"
        assert svc["restart"] == "unless-stopped"
        assert svc["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert "nats" in svc["depends_on"]
    assert services["worker"]["deploy"]["replicas"] == 2
    assert any(str(p).endswith("8080:8080") for p in services["gateway"]["ports"])


def test_compose_infrastructure() -> None:
    services = compose()["services"]
    nats = services["nats"]
    assert nats["image"].startswith("nats:2.")
    assert "-js" in nats["command"]
    assert nats.get("volumes")
    pg = services["postgres"]
    assert pg["image"].startswith("postgres:")
    assert int(pg["image"].split(":")[1].split(".")[0]) >= 15
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    assert pg.get("volumes")
    # The collector config is mounted from the repo, and exists.
    otel = services["otel-collector"]
    sources = [v.split(":")[0] for v in otel["volumes"]]
    assert any(
        (ROOT / s).resolve() == (ROOT / "deploy/otel-collector.yaml").resolve() for s in sources
    )


def test_otel_collector_pipelines_use_defined_components() -> None:
    conf = yaml.safe_load((ROOT / "deploy" / "otel-collector.yaml").read_text())
    assert "otlp" in conf["receivers"]
    assert "4317" in conf["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    pipelines = conf["service"]["pipelines"]
    assert "traces" in pipelines
    for pipeline in pipelines.values():
        for section in ("receivers", "processors", "exporters"):
            for component in pipeline.get(section, []):
                assert component in conf[section], f"{component} not defined in {section}"
    for ext in conf["service"].get("extensions", []):
        assert ext in conf["extensions"]


# ----------------------------------------------------------------------------- Dockerfile


def test_dockerfile_entrypoint_and_default_command() -> None:
    stage = final_stage()
    assert stage[0][1].split()[0] in {"python:3.11-slim", "${PYTHON_IMAGE}"}
    entrypoint = [json.loads(args) for word, args in stage if word == "ENTRYPOINT"]
    assert entrypoint and entrypoint[-1] == ["baton"]
    cmd = [json.loads(args) for word, args in stage if word == "CMD"]
    assert cmd and cmd[-1] == ["serve", "gateway"]
    users = [args for word, args in stage if word == "USER"]
    assert users, "runtime stage runs as root"
    assert users[-1].split(":")[0] not in {"root", "0"}


def test_dockerfile_base_image_is_python_311_slim() -> None:
    instructions = dockerfile_instructions()
    args = " ".join(a for w, a in instructions if w in {"ARG", "FROM"})
    assert "python:3.11-slim" in args


def test_dockerfile_installs_every_workspace_member() -> None:
    runs = [args for word, args in dockerfile_instructions() if word == "RUN"]
    installs = [
        [t for t in shlex.split(cmd)[shlex.split(cmd).index("install") + 1 :] if t.startswith("./")]
        for run in runs
        for cmd in re.split(r"&&|;", run)
        if re.search(r"\bpip\s+install\b", cmd)
    ]
    paths = [p for install in installs for p in install]
    assert paths, "no `pip install ./...` line"
    for p in paths:
        assert (ROOT / p / "pyproject.toml").is_file(), f"{p} is not a workspace member"
    assert sorted(p.removeprefix("./").rstrip("/") for p in paths) == workspace_members()
    # Non-editable: images must not point back at a source tree.
    assert not any("-e" in shlex.split(r) or "--editable" in r for r in runs if "pip" in r)
    # Each installed path is copied into the build context of that stage.
    copied = {
        a.split()[-2] for w, a in dockerfile_instructions() if w == "COPY" and "--from" not in a
    }
    for p in paths:
        assert p.removeprefix("./") in copied, f"{p} is installed but never copied in"


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv"} <= ignored
    # Must not exclude what the build copies.
    assert not ignored & {"libs", "services", "libs/*", "services/*"}


# ------------------------------------------------------------------------------ The bus's keys


def _deployment_container(service: str) -> tuple[dict[str, Any], dict[str, Any]]:
    spec = by_name("Deployment")[service]["spec"]["template"]["spec"]
    return spec, spec["containers"][0]


@pytest.mark.parametrize("service", SERVICES)
def test_each_deployment_mounts_only_its_own_nats_key(service: str) -> None:
    spec, container = _deployment_container(service)
    path = env_value(container, "BATON_NATS_NKEY")
    assert path
    volumes = {v["name"]: v for v in spec["volumes"]}
    mount = next(m for m in container["volumeMounts"] if path.startswith(m["mountPath"] + "/"))
    assert mount.get("readOnly") is True
    secret = volumes[mount["name"]]["secret"]
    assert secret["secretName"] == "baton-nats-keys"
    assert secret["items"] == [
        {"key": f"{service}.nk", "path": Path(path).name},
        {"key": "control.key", "path": "control.key"},
    ]
    assert env_value(container, "BATON_CONTROL_KEY_FILE") == f"{mount['mountPath']}/control.key"


def test_nats_requires_the_generated_authorization() -> None:
    assert "include ./auth/auth.conf" in nats_conf()
    spec = by_name("StatefulSet")["nats"]["spec"]["template"]["spec"]
    auth = next(
        v for v in spec["volumes"] if v.get("secret", {}).get("secretName") == "baton-nats-auth"
    )
    mounts = spec["containers"][0]["volumeMounts"]
    assert any(m["name"] == auth["name"] and m["mountPath"] == "/etc/nats/auth" for m in mounts)
    generated = {g["name"]: g["files"] for g in kustomization()["secretGenerator"]}
    assert generated["baton-nats-auth"] == ["nats-keys/auth.conf"]
    assert sorted(generated["baton-nats-keys"]) == sorted(
        [*(f"nats-keys/{s}.nk" for s in SERVICES), "nats-keys/control.key"]
    )
    assert "nats-keys/" in (K8S / ".gitignore").read_text()  # the seeds never enter git


def test_network_policies_keep_nats_and_postgres_to_baton_pods() -> None:
    policies = by_name("NetworkPolicy")
    assert policies["default-deny-ingress"]["spec"]["podSelector"] == {}
    nats = policies["nats-from-baton"]["spec"]
    assert nats["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "nats"}
    client = next(r for r in nats["ingress"] if any(p["port"] == 4222 for p in r["ports"]))
    assert client["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "baton"}}}]
    pg = policies["postgres-from-baton"]["spec"]
    assert all(
        "podSelector" in peer and len(peer) == 1 for rule in pg["ingress"] for peer in rule["from"]
    )
    for service in SERVICES:  # every service pod carries the label the policies allow
        labels = by_name("Deployment")[service]["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "baton"


def test_compose_authenticates_every_nats_connection() -> None:
    services = compose()["services"]
    assert services["nats-keys"]["command"] == ["nats-keys", "--out", "/keys"]
    nats = services["nats"]
    assert nats["command"][:2] == ["-c", "/keys/auth.conf"]
    assert nats["depends_on"]["nats-keys"]["condition"] == "service_completed_successfully"
    for name in SERVICES:
        svc = services[name]
        path = svc["environment"]["BATON_NATS_NKEY"]
        own = [v for v in svc["volumes"] if isinstance(v, dict) and v.get("source") == "nats-keys"]
        control = svc["environment"]["BATON_CONTROL_KEY_FILE"]
        assert own == [
            {
                "type": "volume",
                "source": "nats-keys",
                "target": target,
                "read_only": True,
                "volume": {"subpath": subpath},
            }
            for target, subpath in ((path, f"{name}.nk"), (control, "control.key"))
        ], name
        assert not any(isinstance(v, str) and v.startswith("nats-keys:") for v in svc["volumes"])


# ------------------------------------------------------------------------- TLS on the bus


def test_compose_tls_override_turns_on_tls_for_the_server_and_every_service() -> None:
    tls = yaml.safe_load((ROOT / "docker-compose.tls.yml").read_text())
    services = tls["services"]
    assert services["nats-tls"]["command"][:3] == ["nats-tls", "--out", "/tls"]
    assert "nats" in services["nats-tls"]["command"]  # the name the services reach it by
    nats = services["nats"]
    assert nats["command"][:2] == compose()["services"]["nats"]["command"][:2]  # auth kept
    assert nats["command"][-5:] == [
        "--tls", "--tlscert", "/tls/server.pem", "--tlskey", "/tls/server.key"
    ]  # fmt: skip
    assert nats["depends_on"]["nats-tls"]["condition"] == "service_completed_successfully"
    for name in SERVICES:
        svc = services[name]
        assert svc["environment"]["NATS_URL"] == "tls://nats:4222", name
        ca = svc["environment"]["NATS_TLS_CA"]
        assert svc["volumes"] == [
            {
                "type": "volume",
                "source": "nats-tls",
                "target": ca,
                "read_only": True,
                "volume": {"subpath": "ca.pem"},  # the CA only, never the server's key
            }
        ], name
        assert svc["depends_on"]["nats-tls"]["condition"] == "service_completed_successfully"
    assert set(services) == {"nats-tls", "nats", *SERVICES}


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) not installed")
def test_kustomize_tls_overlay_turns_on_tls_for_nats_and_every_deployment(tmp_path: Path) -> None:
    from baton_common.busauth import GRANTS, write_auth

    shutil.copytree(K8S, tmp_path / "k8s", ignore=shutil.ignore_patterns("nats-keys"))
    shutil.copytree(ROOT / "deploy" / "k8s-tls", tmp_path / "k8s-tls")
    write_auth(tmp_path / "k8s" / "nats-keys", sorted(GRANTS), "baton", "BATON_EVENTS")
    result = subprocess.run(
        ["kubectl", "kustomize", str(tmp_path / "k8s-tls")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    built = [d for d in yaml.safe_load_all(result.stdout) if d]
    config = next(
        d for d in built if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "baton-config"
    )
    assert config["data"]["NATS_URL"] == "tls://nats:4222"
    ca_dir = str(Path(config["data"]["NATS_TLS_CA"]).parent)
    deployments = [d for d in built if d["kind"] == "Deployment"]
    assert {d["metadata"]["name"] for d in deployments} == set(SERVICES)
    for dep in deployments:
        spec = dep["spec"]["template"]["spec"]
        mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["mountPath"] == ca_dir)
        volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
        assert volume["secret"] == {
            "secretName": "baton-nats-tls",
            "items": [{"key": "ca.crt", "path": Path(config["data"]["NATS_TLS_CA"]).name}],
        }
    nats = next(d for d in built if d["kind"] == "StatefulSet")["spec"]["template"]["spec"]
    args = nats["containers"][0]["args"]
    assert "--tls" in args and args[args.index("--tlscert") + 1].startswith("/etc/nats/tls/")
    certs = {d["metadata"]["name"]: d for d in built if d["kind"] == "Certificate"}
    server = certs["baton-nats-server"]["spec"]
    assert server["secretName"] == "baton-nats-tls" and "nats" in server["dnsNames"]
    assert all(d["metadata"].get("namespace") == "baton" for d in built if d["kind"] != "Namespace")
