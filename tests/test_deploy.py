"""The deployment files, checked without a Docker engine: docker-compose.yml is parsed, every
command is parsed by the real CLI (sparsearch's Typer app, Ray's click CLI), every variable is
checked against the settings, and the Dockerfile against pyproject.toml."""

from __future__ import annotations

import json
import os
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import click
import pytest
import typer
import yaml
from sqlalchemy.engine import make_url

from sparsearch.cli import app
from sparsearch.config import Settings

try:  # Typer >= 0.2x vendors click: its commands raise their own UsageError
    from typer._click.exceptions import UsageError as TyperUsageError
except ImportError:  # pragma: no cover - older Typer uses click itself
    TyperUsageError = click.UsageError
USAGE_ERRORS = (click.UsageError, TyperUsageError)

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
SERVICES = ("postgres", "ray-head", "ray-worker", "api", "scheduler")
#: Services of the sparsearch image: configured by SPARSEARCH_* variables, and the Ray
#: processes among them by Ray's token authentication variables too.
IMAGE_SERVICES = ("ray-head", "ray-worker", "api", "scheduler")
#: The processes of the Ray cluster: both node kinds and the scheduler (a driver on its own node).
RAY_SERVICES = ("ray-head", "ray-worker", "scheduler")
#: Ray's own variables for token authentication (checked below against the installed Ray).
RAY_AUTH_VARIABLES = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict[str, Any]:
    return compose["services"]


def argv(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else [str(a) for a in command]


def env(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):  # the KEY=VALUE list form
        raw = dict(item.split("=", 1) for item in raw)
    return {str(k): str(v) for k, v in raw.items()}


def parse_cli(group: Any, prog: str, args: list[str]) -> Any:
    """Parse ``args`` as the real CLI would (strictly: an unknown command or option raises a
    UsageError) and return the context of the command they name. Duck-typed: Typer vendors its
    own copy of click, so its groups are not ``click.Group`` instances."""
    ctx = group.context_class(group, info_name=prog)
    cmd = group
    while hasattr(cmd, "resolve_command"):  # a group: the next word names a command
        name, sub, args = cmd.resolve_command(ctx, list(args))
        assert sub is not None and name is not None
        cmd = sub
        if hasattr(sub, "resolve_command"):
            ctx = sub.context_class(sub, info_name=name, parent=ctx)
        else:
            ctx = sub.make_context(name, list(args), parent=ctx, resilient_parsing=False)
    return ctx


def parse_sparsearch(args: list[str]) -> click.Context:
    assert args[0] == "sparsearch", args
    return parse_cli(typer.main.get_command(app), "sparsearch", args[1:])


def parse_ray(args: list[str]) -> click.Context:
    from ray.scripts.scripts import cli as ray_cli

    assert args[0] == "ray", args
    return parse_cli(ray_cli, "ray", args[1:])


def volume_targets(service: dict[str, Any]) -> dict[str, str]:
    """Named volume -> mount path in the container."""
    targets = {}
    for v in service.get("volumes", []):
        if isinstance(v, dict):
            targets[v["source"]] = v["target"]
        else:
            source, target, *_ = v.split(":")
            targets[source] = target
    return targets


# -- compose: services and commands ------------------------------------------------------------


def test_every_service_is_defined(compose, services):
    assert set(SERVICES) <= set(services)
    assert {"artifacts", "pgdata"} <= set(compose.get("volumes") or {})


def test_the_parser_is_strict():
    """The checks below would pass anything if parsing were lenient."""
    with pytest.raises(USAGE_ERRORS):
        parse_sparsearch(["sparsearch", "serve", "--no-such-option"])
    with pytest.raises(USAGE_ERRORS):
        parse_sparsearch(["sparsearch", "no-such-command"])
    with pytest.raises(USAGE_ERRORS):
        parse_sparsearch(["sparsearch", "token", "create"])  # --owner is required
    with pytest.raises(USAGE_ERRORS):
        parse_ray(["ray", "start", "--no-such-option"])
    assert (
        parse_sparsearch(["sparsearch", "token", "create", "--owner", "a"]).params["owner"] == "a"
    )


def test_api_serves_without_a_scheduler_on_its_published_port(services):
    api = services["api"]
    ctx = parse_sparsearch(argv(api))
    assert ctx.info_name == "serve"
    assert ctx.params["scheduler"] is False
    assert ctx.params["host"] == "0.0.0.0"
    published = {str(p).rsplit(":", 1)[-1] for p in api["ports"]}
    assert str(ctx.params["port"]) in published
    assert env(api)["SPARSEARCH_AUTH"] == "on"


def test_scheduler_runs_the_scheduler_command(services):
    ctx = parse_sparsearch(argv(services["scheduler"]))
    assert ctx.info_name == "scheduler"
    assert ctx.params["parent_pid"] is None  # a standalone scheduler, not serve's child


def test_ray_nodes_form_one_cluster(services):
    head = parse_ray(argv(services["ray-head"]))
    assert head.info_name == "start"
    assert head.params["head"] and head.params["block"]
    assert head.params["num_cpus"] == 0  # trials train on the workers
    address = f"ray-head:{head.params['port']}"
    worker = parse_ray(argv(services["ray-worker"]))
    assert worker.info_name == "start"
    assert not worker.params["head"] and worker.params["block"]
    assert worker.params["address"] == address
    assert env(services["scheduler"])["SPARSEARCH_RAY_ADDRESS"] == address


def test_ray_worker_can_be_scaled(services):
    worker = services["ray-worker"]
    assert "container_name" not in worker
    assert "ports" not in worker
    assert "container_name" not in services["scheduler"]


def test_one_image_for_api_scheduler_and_ray(services):
    images = {services[name]["image"] for name in IMAGE_SERVICES}
    assert len(images) == 1
    for name in IMAGE_SERVICES:
        build = services[name]["build"]
        context = build if isinstance(build, str) else build.get("context", ".")
        assert (ROOT / context / "Dockerfile").resolve() == DOCKERFILE


# -- compose: settings --------------------------------------------------------------------------


@pytest.mark.parametrize("name", IMAGE_SERVICES)
def test_only_real_settings_are_set(services, name, monkeypatch):
    variables = env(services[name])
    ray_auth = {k for k in variables if k in RAY_AUTH_VARIABLES}
    assert not ray_auth or name in RAY_SERVICES, f"{name} uses no Ray but gets {ray_auth}"
    variables = {k: v for k, v in variables.items() if k not in ray_auth}
    for key in variables:
        assert key.startswith("SPARSEARCH_"), f"{name}: {key} is not a sparsearch setting"
        field = key.removeprefix("SPARSEARCH_").lower()
        assert field in Settings.model_fields, f"{name}: {key} names no Settings field"
    # ... and the values are valid settings.
    for key in [k for k in os.environ if k.startswith("SPARSEARCH_")]:
        monkeypatch.delenv(key)
    for key, value in variables.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    for key, value in variables.items():
        assert str(getattr(settings, key.removeprefix("SPARSEARCH_").lower())) == value


# -- compose: Ray's token authentication -------------------------------------------------------

#: ``${NAME:?message}``: compose substitutes the operator's variable, and refuses to start
#: without it.
REQUIRED_VARIABLE = re.compile(r"^\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*):\?(?P<message>[^}]+)\}$")


def test_the_auth_variables_are_the_ones_ray_reads():
    """The names and mode the compose file relies on, as the installed Ray spells them."""
    from ray._private.authentication import authentication_token_setup
    from ray._private.authentication.authentication_utils import get_authentication_mode_name
    from ray._raylet import AuthenticationMode
    from ray.exceptions import AuthenticationError

    assert authentication_token_setup.AUTH_MODE_ENV_VAR == "RAY_AUTH_MODE"
    assert get_authentication_mode_name(AuthenticationMode.TOKEN) == "token"
    # Ray's own help text on a refused token names the variable its C++ core reads.
    assert "`RAY_AUTH_TOKEN` environment variable" in str(AuthenticationError("refused"))


def test_every_ray_process_gets_the_same_token(services):
    tokens = set()
    for name in RAY_SERVICES:
        variables = env(services[name])
        assert variables.get("RAY_AUTH_MODE") == "token", f"{name}: token authentication off"
        assert "RAY_AUTH_TOKEN" in variables, f"{name} gets no RAY_AUTH_TOKEN"
        tokens.add(variables["RAY_AUTH_TOKEN"])
    assert len(tokens) == 1, tokens
    # Not a literal in the file: the operator's variable, required (README: how to set it).
    required = REQUIRED_VARIABLE.match(tokens.pop())
    assert required, "RAY_AUTH_TOKEN must be ${VARIABLE:?message}"
    assert required["name"] == "RAY_AUTH_TOKEN"
    assert "RAY_AUTH_TOKEN" in required["message"]
    readme = (ROOT / "README.md").read_text()
    assert f"{required['name']}=" in readme and "ray get-auth-token" in readme
    # The API runs no Ray: it gets neither the token nor the mode.
    assert not set(env(services["api"])) & set(RAY_AUTH_VARIABLES)


def test_ray_processes_name_no_token_file_of_their_own(services):
    """A token file path (RAY_AUTH_TOKEN_PATH, or the default ~/.ray/auth_token) would be each
    container's own: the one variable above is the only source."""
    for name in RAY_SERVICES:
        assert "RAY_AUTH_TOKEN_PATH" not in env(services[name])
        assert not any("auth_token" in str(v) for v in services[name].get("volumes", []))


def test_postgres_matches_the_database_url(services):
    pg = env(services["postgres"])
    assert all(k.startswith("POSTGRES_") for k in pg)
    for name in ("api", "scheduler"):
        url = make_url(env(services[name])["SPARSEARCH_DATABASE_URL"])
        assert url.get_backend_name() == "postgresql"
        assert (url.host, url.port) == ("postgres", 5432)
        assert (url.username, url.password, url.database) == (
            pg["POSTGRES_USER"],
            pg["POSTGRES_PASSWORD"],
            pg["POSTGRES_DB"],
        )
    assert "healthcheck" in services["postgres"]
    assert volume_targets(services["postgres"])["pgdata"] == "/var/lib/postgresql/data"


def test_api_and_scheduler_share_the_artifact_volume(services):
    paths = set()
    for name in ("api", "scheduler"):
        service = services[name]
        artifact_dir = env(service)["SPARSEARCH_ARTIFACT_DIR"]
        assert volume_targets(service)["artifacts"] == artifact_dir
        paths.add(artifact_dir)
    assert len(paths) == 1


# -- Dockerfile ---------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), " ".join(rest.split())))
    return out


def test_dockerfile_installs_cpu_torch_then_the_project():
    steps = dockerfile_instructions()
    assert steps[0] == ("FROM", "python:3.11-slim")
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    torch_pin = next(d for d in deps if d.startswith("torch=="))
    runs = [args for op, args in steps if op == "RUN"]
    torch_step = next(i for i, r in enumerate(runs) if torch_pin in r.split())
    assert "--index-url https://download.pytorch.org/whl/cpu" in runs[torch_step]
    project_step = next(i for i, r in enumerate(runs) if re.search(r"pip install \.(\s|$)", r))
    assert torch_step < project_step
    copied = " ".join(args for op, args in steps if op == "COPY")
    assert "pyproject.toml" in copied and "src" in copied


def test_dockerfile_default_command_and_entrypoint():
    steps = dict(dockerfile_instructions())  # the last of each instruction counts
    cmd = json.loads(steps["CMD"])
    assert parse_sparsearch(cmd).info_name == "serve"
    entry = json.loads(steps["ENTRYPOINT"])
    copy = next(args for op, args in dockerfile_instructions() if op == "COPY" and entry[0] in args)
    script = ROOT / copy.split()[-2]
    text = script.read_text()
    assert text.startswith("#!/bin/sh") and 'exec "$@"' in text
    # The entry point, too, is configured only by SPARSEARCH_* variables.
    assert set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", text)) <= {
        "SPARSEARCH_RAY_ADDRESS",
        "tries",
    }
