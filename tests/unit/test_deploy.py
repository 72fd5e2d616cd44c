"""The deployment files, checked statically (no Docker engine here): docker-compose.yml, the
Dockerfile, requirements.lock and the Prometheus scrape config."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from pydantic import BaseModel

from imageq.config import Settings

ROOT = Path(__file__).parents[2]
IMAGEQ_VARIABLE = re.compile(r"\bIMAGEQ_[A-Z0-9_]+\b")
METRICS_PORT = Settings.model_fields["observability"].default.metrics_port
EXPORTER_PORT = Settings.model_fields["observability"].default.exporter_port
# The one health entry point, `imageq health`, as the image and the worker service run it.
IMAGE_HEALTHCHECK = ["imageq", "health", "--json", "--timeout", "5", "--skip", "schedules"]
# What compose runs from the production image beyond the worker: Flower. The simulator of the
# demo profile is a stage of its own, with its own lock.
IMAGE_EXTRAS = ("ops",)
SIMULATOR_EXTRAS = ("ops", "simulator")


def load_yaml(name: str) -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / name).read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml("docker-compose.yml")


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def setting_variables() -> set[str]:
    """IMAGEQ_GROUP__NAME for every field of every group of `config.Settings`."""
    names = set()
    for group_name, group in Settings.model_fields.items():
        model = group.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            names |= {f"IMAGEQ_{group_name}__{name}".upper() for name in model.model_fields}
        else:
            names.add(f"IMAGEQ_{group_name}".upper())
    return names


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's `environment`, in either of compose's forms (mapping or KEY=VALUE list)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.partition("=")[::2] for item in env)
    return {str(key): str(value) for key, value in env.items()}


def strings(node: object) -> Iterator[str]:
    """Every string in a parsed YAML document, keys and values."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from strings(key)
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    pairs = []
    for line in joined.splitlines():
        if line.strip():
            instruction, _, arguments = line.strip().partition(" ")
            pairs.append((instruction.upper(), " ".join(arguments.split())))
    return pairs


def test_required_services(services: dict[str, dict[str, Any]]) -> None:
    """Redis, workers, the scheduler, Flower, the simulator and Prometheus are all declared."""
    assert {"redis", "worker", "scheduler", "flower", "simulator", "prometheus"} <= set(services)


def test_redis_is_durable_and_never_evicts(services: dict[str, dict[str, Any]]) -> None:
    """AOF on, noeviction, a healthcheck and a volume for its data."""
    redis = services["redis"]
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command
    assert "ping" in " ".join(redis["healthcheck"]["test"])
    assert any(str(volume).endswith(":/data") for volume in redis["volumes"])


def test_worker_scales_and_checks_its_health(services: dict[str, dict[str, Any]]) -> None:
    """No container_name (so --scale works), the health command as healthcheck, restarts."""
    worker = services["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker, "a published port would clash between replicas"
    assert worker["healthcheck"]["test"] == ["CMD", *IMAGE_HEALTHCHECK]
    assert worker["restart"] == "unless-stopped"
    assert worker["command"][:4] == ["celery", "-A", "imageq.worker.app", "worker"]
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"


def test_scheduler_and_flower_commands(services: dict[str, dict[str, Any]]) -> None:
    """The scheduler is the Redis-backed beat; Flower serves on 5555."""
    assert services["scheduler"]["command"][:4] == ["celery", "-A", "imageq.worker.app", "beat"]
    assert services["flower"]["command"] == [
        "celery", "-A", "imageq.worker.app", "flower", "--port=5555",
    ]  # fmt: skip


def test_every_service_of_the_image_has_its_own_healthcheck(
    services: dict[str, dict[str, Any]],
) -> None:
    """The image's healthcheck is the worker's; every other service of the image sets its own."""
    for name, service in services.items():
        if service.get("image") == "imageq:latest":
            assert "healthcheck" in service, name


def test_profiles(services: dict[str, dict[str, Any]]) -> None:
    """The simulator runs only with --profile demo, Prometheus only with monitoring."""
    assert services["simulator"]["profiles"] == ["demo"]
    assert services["prometheus"]["profiles"] == ["monitoring"]
    always = ("redis", "worker", "scheduler", "flower")
    assert all("profiles" not in services[name] for name in always)


def test_demo_defaults_reach_the_simulator_without_a_key(
    services: dict[str, dict[str, Any]],
) -> None:
    """With no .env the workers' API URL and key default to the demo simulator's."""
    env = environment(services["worker"])
    assert env["IMAGEQ_API__BASE_URL"] == "${IMAGEQ_API__BASE_URL:-http://simulator:8080}"
    assert env["IMAGEQ_API__KEY"] == "${IMAGEQ_API__KEY:-sk-simulator}"
    command = services["simulator"]["command"]
    assert command[command.index("--api-key") + 1] == "sk-simulator"
    assert command[command.index("--port") + 1] == "8080"


def test_every_variable_set_is_a_real_setting(compose: dict[str, Any]) -> None:
    """Each IMAGEQ_* set in an environment, or read in a ${...}, is a field of Settings."""
    known = setting_variables()
    used = set()
    for service in compose["services"].values():
        used |= {key for key in environment(service) if key.startswith("IMAGEQ_")}
    for text in strings(compose):
        used |= set(IMAGEQ_VARIABLE.findall(text))
    assert used, "the compose file sets no IMAGEQ_ variable at all"
    assert used <= known, sorted(used - known)


def test_dockerfile_is_slim_pinned_and_not_root() -> None:
    """A slim Python base pinned to a release, installs from the lock, runs as a named user."""
    instructions = dockerfile_instructions()
    bases = [arguments for instruction, arguments in instructions if instruction == "FROM"]
    # One pulled base, a build argument whose default is the official slim image; the
    # simulator's stage and the final (default) one build on it.
    assert bases[0] == "${PYTHON_IMAGE} AS imageq", bases[0]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+", dockerfile_python_image())
    assert bases[1:] == ["imageq AS simulator", "imageq"], bases
    users = [arguments for instruction, arguments in instructions if instruction == "USER"]
    assert users, "no USER: the image would run as root"
    assert users[-1] not in ("root", "0")
    last_user = max(i for i, (instruction, _) in enumerate(instructions) if instruction == "USER")
    runs = [i for i, (instruction, _) in enumerate(instructions) if instruction == "RUN"]
    assert max(runs) < last_user, "a RUN after the last USER would run as that user"
    run_text = " ".join(args for instruction, args in instructions if instruction == "RUN")
    assert "pip install --no-cache-dir -r requirements.lock" in run_text
    assert "--no-deps" in run_text
    assert ("EXPOSE", str(METRICS_PORT)) in instructions
    (healthcheck,) = [args for instruction, args in instructions if instruction == "HEALTHCHECK"]
    assert healthcheck.endswith("CMD " + json.dumps(IMAGE_HEALTHCHECK)), healthcheck


def dockerfile_python_image() -> str:
    """The default of the Dockerfile's PYTHON_IMAGE build argument."""
    (argument,) = [
        arguments
        for instruction, arguments in dockerfile_instructions()
        if instruction == "ARG" and arguments.startswith("PYTHON_IMAGE=")
    ]
    return argument.partition("=")[2]


def test_compose_builds_on_the_dockerfiles_default_base(
    services: dict[str, dict[str, Any]],
) -> None:
    """Both builds of compose pass PYTHON_IMAGE with the Dockerfile's own default, through the
    host's network; the simulator's is the same build with its stage."""
    default = "${PYTHON_IMAGE:-" + dockerfile_python_image() + "}"
    for name in ("worker", "simulator"):
        build = services[name]["build"]
        assert build["args"] == {"PYTHON_IMAGE": default}, name
        assert build["network"] == "host", name
    assert services["simulator"]["build"]["target"] == "simulator"


def test_compose_file_suits_the_standalone_docker_compose(compose: dict[str, Any]) -> None:
    """No top-level `name:` and plain `env_file` strings: docker-compose 1.29 refuses both the
    key and the `path:`/`required:` form."""
    assert "name" not in compose
    for name, service in compose["services"].items():
        env_file = service.get("env_file", ".env")
        assert isinstance(env_file, str), name


def locked_versions(lock: str = "requirements.lock") -> dict[str, str]:
    """Normalised name -> exact version, from a lock file; every entry must be `==`."""
    pins: dict[str, str] = {}
    for line in (ROOT / lock).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", line
        pins[canonicalize_name(requirement.name)] = specifier.version
    return pins


def test_lock_pins_every_runtime_dependency() -> None:
    """Each [project] dependency (and those of the extras the image installs) is pinned ==, to
    a version pyproject allows."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = locked_versions()
    extras = project["optional-dependencies"]
    declared = [*project["dependencies"], *(line for name in IMAGE_EXTRAS for line in extras[name])]
    for line in declared:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not in requirements.lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {name}=={pins[name]}, pyproject wants {requirement.specifier}"
        )
        for extra in requirement.extras:  # celery[redis] needs redis itself in the lock
            assert canonicalize_name(extra) in pins, f"{line}: {extra} is not in the lock"


@pytest.mark.parametrize(
    ("lock", "extras"),
    [("requirements.lock", IMAGE_EXTRAS), ("requirements-simulator.lock", SIMULATOR_EXTRAS)],
)
def test_lock_is_compiled_with_the_image_extras(lock: str, extras: tuple[str, ...]) -> None:
    """Each lock's header regenerates it with exactly the extras its image needs."""
    header = (ROOT / lock).read_text().split("\n\n", 1)[0]
    assert sorted(re.findall(r"--extra=([\w-]+)", header)) == sorted(extras)


def test_production_image_has_no_simulator_dependency() -> None:
    """The production lock holds no aiohttp; the simulator's lock pins everything else alike."""
    production = locked_versions("requirements.lock")
    simulator = locked_versions("requirements-simulator.lock")
    assert "aiohttp" not in production
    assert "aiohttp" in simulator
    assert {name: simulator[name] for name in production} == production


def test_image_copies_imageq_and_every_folder_it_links() -> None:
    """`pip install .` in the image sees imageq/ and every repository folder it links to."""
    linked = {path.name for path in (ROOT / "imageq").iterdir() if path.is_symlink()}
    copied = {
        arguments.split()[0]
        for instruction, arguments in dockerfile_instructions()
        if instruction == "COPY"
    }
    assert linked, "imageq/ links no folder"
    assert {"imageq", *linked} <= copied, sorted({"imageq", *linked} - copied)


def test_services_run_installed_commands(services: dict[str, dict[str, Any]]) -> None:
    """Each service of the image runs an installed command or an imageq module, never a bare
    repository folder (only imageq is installed)."""
    for name, service in services.items():
        command = service.get("command")
        if service.get("image") != "imageq:latest" or not command:
            continue
        if command[:2] == ["python", "-m"]:
            assert command[2].startswith("imageq."), (name, command)
        else:
            assert command[0] in {"celery", "imageq", "imageq-simulator"}, (name, command)


def test_prometheus_scrapes_every_worker_on_the_metrics_port() -> None:
    """The scrape config parses and discovers the worker replicas on the metrics port."""
    config = load_yaml("deploy/prometheus.yml")
    worker_jobs = [
        sd
        for job in config["scrape_configs"]
        for sd in job.get("dns_sd_configs", [])
        if "worker" in sd["names"]
    ]
    assert worker_jobs, "no scrape job discovers the worker service"
    assert all(sd["port"] == METRICS_PORT for sd in worker_jobs)


def test_prometheus_scrapes_the_one_cluster_exporter(services: dict[str, dict[str, Any]]) -> None:
    """The cluster-wide gauges come from one target: the exporter service, on its port, in the
    monitoring profile beside Prometheus."""
    config = load_yaml("deploy/prometheus.yml")
    targets = [
        target
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
        if target.startswith("metrics-exporter:")
    ]
    assert targets == [f"metrics-exporter:{EXPORTER_PORT}"]
    exporter = services["metrics-exporter"]
    assert exporter["command"] == ["imageq", "metrics-exporter"]
    assert exporter["profiles"] == services["prometheus"]["profiles"]
    assert str(EXPORTER_PORT) in exporter["expose"]


def test_compose_mounts_the_prometheus_config(services: dict[str, dict[str, Any]]) -> None:
    """The file the test above checks is the one Prometheus reads."""
    volumes = services["prometheus"]["volumes"]
    assert "./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in volumes
