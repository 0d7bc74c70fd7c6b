"""The distributed variant's topology and the deployment files generated from it.

The committed docker-compose.yml, k8s/*.yaml and Dockerfile must be exactly what the
topology generates, and every service and every dependency of the topology must appear in
them. Docker and Kubernetes are not needed: the files are parsed, not deployed.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from variants.distributed import deploy
from variants.distributed.topology import TOPOLOGY_FILE, TopologyError, load, parse
from workloads.shop.dataset import CONTEXTS

TOPOLOGY = load()
PORT = TOPOLOGY.deployment.port


def _peers(args: list[str]) -> set[str]:
    return {args[i + 1].split("=")[0] for i, a in enumerate(args) if a == "--peer"}


def test_committed_files_are_what_the_topology_generates() -> None:
    stale = deploy.check(TOPOLOGY)
    assert not stale, f"regenerate with `python -m variants.distributed.deploy`: {stale}"


def test_generation_is_deterministic_and_writes_every_file(tmp_path: Path) -> None:
    written = deploy.write(TOPOLOGY, tmp_path)
    assert set(written) == set(deploy.generate(TOPOLOGY))
    assert deploy.check(TOPOLOGY, tmp_path) == []
    (tmp_path / "k8s" / "leftover.yaml").write_text("kind: Service\n")
    assert deploy.check(TOPOLOGY, tmp_path) == ["k8s/leftover.yaml"]


def test_topology_has_one_service_per_context_and_a_gateway() -> None:
    contexts = sorted(s.context for s in TOPOLOGY.services.values() if s.context)
    assert contexts == sorted(CONTEXTS)
    gateway = TOPOLOGY.gateway
    assert gateway.public and set(gateway.depends_on) == set(CONTEXTS)
    assert TOPOLOGY.levels()[-1] == [gateway.name]


def test_compose_has_every_service_dependency_and_healthcheck() -> None:
    doc = yaml.safe_load((deploy.DEPLOY_DIR / "docker-compose.yml").read_text())
    services = doc["services"]
    assert set(services) == set(TOPOLOGY.services)
    for name, svc in TOPOLOGY.services.items():
        entry = services[name]
        assert set(entry.get("depends_on", {})) == set(svc.depends_on)
        assert all(
            d["condition"] == "service_healthy" for d in entry.get("depends_on", {}).values()
        )
        assert _peers(entry["command"]) == set(svc.depends_on)
        assert entry["command"][0] == name
        assert "/healthz" in " ".join(entry["healthcheck"]["test"])
        assert entry["restart"] == "unless-stopped"
        assert entry["deploy"]["replicas"] == svc.replicas
        reservations = entry["deploy"]["resources"]["reservations"]
        assert reservations["memory"] == f"{svc.memory_mib}M"
        assert ("volumes" in entry) == bool(svc.context)  # a database per context service
    assert services[TOPOLOGY.gateway.name]["ports"] == [
        f"127.0.0.1:{TOPOLOGY.deployment.public_port}:{PORT}"
    ]


def _k8s(name: str) -> dict[str, dict[str, Any]]:
    docs = list(yaml.safe_load_all((deploy.DEPLOY_DIR / "k8s" / f"{name}.yaml").read_text()))
    return {d["kind"]: d for d in docs}


def test_k8s_has_a_deployment_and_a_service_per_service() -> None:
    kustomization = yaml.safe_load((deploy.DEPLOY_DIR / "k8s" / "kustomization.yaml").read_text())
    assert kustomization["resources"] == [f"{n}.yaml" for n in TOPOLOGY.services]
    for name, svc in TOPOLOGY.services.items():
        kinds = _k8s(name)
        expected = {"Deployment", "Service"} | (
            {"PersistentVolumeClaim"} if svc.stateful else set()
        )
        assert set(kinds) == expected
        spec = kinds["Deployment"]["spec"]
        assert spec["replicas"] == svc.replicas
        assert spec["strategy"]["type"] == ("Recreate" if svc.stateful else "RollingUpdate")
        pod = spec["template"]["spec"]
        (container,) = pod["containers"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["resources"]["requests"] == {
            "cpu": f"{svc.cpu_m}m",
            "memory": f"{svc.memory_mib}Mi",
        }
        assert _peers(container["args"]) == set(svc.depends_on)
        waits = [a for c in pod.get("initContainers", []) for a in c["args"] if "://" in a]
        assert waits == [f"http://{d}:{PORT}/healthz" for d in svc.depends_on]
        service = kinds["Service"]["spec"]
        assert service["selector"] == spec["selector"]["matchLabels"]
        assert service["ports"][0]["port"] == PORT


def test_dockerfile_builds_the_service_image() -> None:
    text = (deploy.DEPLOY_DIR / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["python", "-m", "variants.distributed.service"]' in text
    assert f"EXPOSE {PORT}" in text
    assert f"dataset.ensure('{TOPOLOGY.deployment.size}', {TOPOLOGY.deployment.seed})" in text


def _doc() -> dict[str, Any]:
    return tomllib.loads(TOPOLOGY_FILE.read_text())


def test_topology_rejects_a_cycle() -> None:
    doc = _doc()
    doc["services"]["catalog"]["depends_on"] = ["gateway"]
    with pytest.raises(TopologyError, match="cycle"):
        parse(doc)


def test_topology_rejects_a_missing_domain_dependency() -> None:
    doc = _doc()
    doc["services"]["orders"]["depends_on"] = ["catalog"]
    with pytest.raises(TopologyError, match="inventory"):
        parse(doc)


def test_topology_rejects_replicas_of_a_stateful_service() -> None:
    doc = _doc()
    doc["services"]["orders"]["replicas"] = 2
    with pytest.raises(TopologyError, match="scalable"):
        parse(doc)
