"""docker-compose.yml, Dockerfile and .env.example: valid, complete, naming only real things.

No Docker engine runs here. Debian's `docker-compose` package (1.29) parses, interpolates and
validates a compose file without one: `docker-compose -f docker-compose.yml config -q`. Without
that binary the validation tests skip, or fail when CI=true (.ci/run installs it). The
structural checks parse the file with ruamel.yaml and need nothing.

Every `scheduler <command>` named in docker-compose.yml, the Dockerfile and README.md's code
blocks must be a command of the real CLI (walked from `scheduler.cli.app`), and every service a
`docker compose ...` line names must be a service of docker-compose.yml.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer
from ruamel.yaml import YAML

from scheduler.config.secrets import REFERENCE

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ENV_EXAMPLE = ROOT / ".env.example"
README = ROOT / "README.md"
CAMPAIGNS = ROOT / "campaigns.yaml"

SERVICES = {"redis", "postgres", "migrate", "clock", "worker", "web", "mailpit"}
APP_SERVICES = ("migrate", "clock", "worker", "web")


# --- helpers -----------------------------------------------------------------------------------


def load_yaml(text: str) -> Any:
    return YAML(typ="safe", pure=True).load(io.StringIO(text))


def compose() -> dict[str, Any]:
    data = load_yaml(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def service(name: str) -> dict[str, Any]:
    services = compose()["services"]
    assert name in services, f"docker-compose.yml has no service {name!r}"
    return dict(services[name])


def argv(value: Any) -> list[str]:
    """A compose command, entrypoint or healthcheck test as a list of words."""
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    return [str(v) for v in value]


def depends_on(svc: dict[str, Any]) -> dict[str, str]:
    deps = svc.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: (cond or {}).get("condition", "service_started") for name, cond in deps.items()}


def environment(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def volume_targets(svc: dict[str, Any]) -> dict[str, str]:
    """Target path -> "source" or "source:mode" of a service's short-syntax volumes."""
    out = {}
    for spec in map(str, svc.get("volumes") or []):
        mode = ""
        if spec.endswith((":ro", ":rw")):
            spec, mode = spec[:-3], spec[-2:]
        source, _, target = spec.rpartition(":")  # a source may hold ":" (${VAR:-default})
        out[target] = f"{source}:{mode}" if mode else source
    return out


def campaign_secrets() -> set[str]:
    """The `${VAR}` names campaigns.yaml's values refer to (not its comments)."""
    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, str):
            names.update(m["name"] for m in REFERENCE.finditer(node))

    walk(load_yaml(CAMPAIGNS.read_text(encoding="utf-8")))
    return names


def env_example() -> tuple[dict[str, str], set[str]]:
    """(uncommented NAME=value assignments, every NAME mentioned as `NAME=` or `# NAME=`)."""
    assigned: dict[str, str] = {}
    mentioned: set[str] = set()
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^(#\s*)?([A-Z_][A-Z0-9_]*)=(.*)$", line.strip())
        if not m:
            continue
        mentioned.add(m[2])
        if m[1] is None:
            assigned[m[2]] = m[3]
    return assigned, mentioned


# --- docker-compose config (needs the docker-compose binary) -----------------------------------


def docker_compose() -> str:
    path = shutil.which("docker-compose")
    if path is None:
        reason = (
            "docker-compose is not installed: apt-get install docker-compose "
            "(it validates docker-compose.yml without a Docker engine)"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def run_compose(*args: str, env_file: Path = ENV_EXAMPLE) -> subprocess.CompletedProcess[str]:
    """`docker-compose -f docker-compose.yml ARGS` with `env_file` in place of `.env`.

    The environment is minimal so that nothing set in the calling shell (a POSTGRES_PASSWORD,
    an SMTP_URL) hides what the env file alone produces.
    """
    env = {
        k: os.environ[k] for k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR") if k in os.environ
    }
    env["SCHEDULER_ENV_FILE"] = str(env_file)  # the app services' env_file
    return subprocess.run(
        [docker_compose(), "--env-file", str(env_file), "-f", str(COMPOSE), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_compose_config_is_valid_with_env_example() -> None:
    result = run_compose("config", "-q")
    assert result.returncode == 0, result.stderr
    # Every variable the file interpolates is set or has a default: no "is not set" warnings.
    assert "WARNING" not in result.stderr, result.stderr


def test_compose_resolved_config(tmp_path: Path) -> None:
    result = run_compose("config")
    assert result.returncode == 0, result.stderr
    resolved = load_yaml(result.stdout)["services"]
    assert set(resolved) == SERVICES
    assigned, _ = env_example()
    password = assigned["POSTGRES_PASSWORD"]
    for name in APP_SERVICES:
        env = environment(resolved[name])
        assert env["SMTP_URL"] == "smtp://mailpit:1025", name  # local runs: mail in mailpit
        assert env["SCHEDULER_BROKER_URL"] == "redis://redis:6379/0", name
        assert env["SCHEDULER_DATABASE_URL"] == (
            f"postgresql+psycopg://scheduler:{password}@postgres:5432/scheduler"
        ), name
        assert env["SCHEDULER_CONFIG"] == "/app/project/campaigns.yaml", name
        # An empty value counts as set: .env.example must leave unused secrets unset.
        empty = sorted(k for k, v in env.items() if v == "")
        assert not empty, f"{name}: variables set to an empty string: {empty}"
    assert environment(resolved["postgres"])["POSTGRES_PASSWORD"] == password

    # SMTP_URL from the env file wins over the mailpit default.
    custom = tmp_path / "custom.env"
    custom.write_text(
        ENV_EXAMPLE.read_text(encoding="utf-8")
        + "SMTP_URL=smtp://relay.example.org:587\nMASTODON_TOKEN=t0ken\n",
        encoding="utf-8",
    )
    result = run_compose("config", env_file=custom)
    assert result.returncode == 0, result.stderr
    worker = environment(load_yaml(result.stdout)["services"]["worker"])
    assert worker["SMTP_URL"] == "smtp://relay.example.org:587"
    assert worker["MASTODON_TOKEN"] == "t0ken"  # env_file reaches the app containers


def test_compose_refuses_a_missing_postgres_password(tmp_path: Path) -> None:
    bare = tmp_path / "bare.env"
    bare.write_text("# nothing set\n", encoding="utf-8")
    result = run_compose("config", "-q", env_file=bare)
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr, result.stderr


# --- the file's structure (ruamel.yaml; no binary needed) --------------------------------------


def test_services() -> None:
    data = compose()
    assert set(data["services"]) == SERVICES
    assert "version" not in data  # the Compose Specification: no version key


def test_redis() -> None:
    redis = service("redis")
    assert redis["image"] == "redis:7"
    words = argv(redis.get("command"))
    assert "--appendonly" in words and words[words.index("--appendonly") + 1] == "yes"
    source = volume_targets(redis)["/data"]
    assert source in compose()["volumes"], "redis /data must be a named volume"
    assert argv(redis["healthcheck"]["test"])[-2:] == ["redis-cli", "ping"]


def test_postgres() -> None:
    pg = service("postgres")
    assert pg["image"] == "postgres:16"
    assert volume_targets(pg)["/var/lib/postgresql/data"] in compose()["volumes"]
    assert "pg_isready" in " ".join(argv(pg["healthcheck"]["test"]))
    env = environment(pg)
    assert env["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?"), "required, from .env"
    assert not pg.get("ports"), "PostgreSQL is not published on the host"


def test_migrate_runs_once_after_postgres() -> None:
    migrate = service("migrate")
    assert argv(migrate["command"]) == ["scheduler", "migrate"]
    assert depends_on(migrate) == {"postgres": "service_healthy"}
    assert migrate.get("restart") == "no"


@pytest.mark.parametrize("name", ["clock", "worker"])
def test_clock_and_worker_wait_for_migrate_and_redis(name: str) -> None:
    svc = service(name)
    assert argv(svc["command"]) == ["scheduler", name]
    assert depends_on(svc) == {
        "migrate": "service_completed_successfully",
        "redis": "service_healthy",
    }
    # Both may run as several containers (--scale worker=4; two clocks for failover).
    assert "container_name" not in svc
    assert not svc.get("ports")


def test_web_serves_on_port_8000_after_migrate() -> None:
    web = service("web")
    assert argv(web["command"]) == ["scheduler", "web", "--host", "0.0.0.0", "--port", "8000"]
    assert depends_on(web)["migrate"] == "service_completed_successfully"
    assert [str(p).rsplit(":", 1)[-1] for p in web["ports"]] == ["8000"]
    assert "${WEB_PORT:-8000}" in str(web["ports"][0])
    test = " ".join(argv(web["healthcheck"]["test"]))
    assert "http://127.0.0.1:8000/healthz" in test


def test_worker_health_is_a_celery_ping() -> None:
    test = " ".join(argv(service("worker")["healthcheck"]["test"]))
    assert "celery -A scheduler.tasks inspect ping" in test
    assert "$${HOSTNAME}" in test  # its own node only, escaped from compose interpolation


def test_mailpit() -> None:
    mailpit = service("mailpit")
    assert str(mailpit["image"]).startswith("axllent/mailpit")
    targets = {str(p).rsplit(":", 1)[-1] for p in mailpit["ports"]}
    assert targets == {"1025", "8025"}
    assert all(str(p).startswith("127.0.0.1:") for p in mailpit["ports"]), "no login: loopback"
    assert argv(mailpit["healthcheck"]["test"]) == ["CMD", "/mailpit", "readyz"]


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_share_the_image_project_and_secrets(name: str) -> None:
    svc = service(name)
    assert svc["build"] == "."
    assert svc.get("init") is True
    assert svc["env_file"] == ["${SCHEDULER_ENV_FILE:-.env}"]
    assert volume_targets(svc)["/app/project"] == "${SCHEDULER_PROJECT_DIR:-.}:ro"
    env = environment(svc)
    assert env["SCHEDULER_CONFIG"] == "/app/project/campaigns.yaml"
    assert env["SMTP_URL"] == "${SMTP_URL:-smtp://mailpit:1025}"
    assert env["SCHEDULER_BROKER_URL"] == "redis://redis:6379/0"
    assert "@postgres:5432/" in env["SCHEDULER_DATABASE_URL"]
    assert "${POSTGRES_PASSWORD:?" in env["SCHEDULER_DATABASE_URL"]


def test_no_secret_is_written_into_the_compose_file() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    assigned, _ = env_example()
    assert assigned["POSTGRES_PASSWORD"] not in text
    for name, svc in compose()["services"].items():
        for key, value in environment(dict(svc)).items():
            if re.search(r"PASSWORD|TOKEN|SECRET", key):
                assert value.startswith("${"), f"{name}.{key} must come from .env"


# --- Dockerfile, .dockerignore, .env.example ----------------------------------------------------


def test_dockerfile() -> None:
    lines = [
        line.strip()
        for line in DOCKERFILE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert lines[0] == "FROM python:3.11-slim"
    users = [line.split(None, 1)[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the app runs as non-root"
    assert any(line.startswith("RUN pip install") for line in lines)
    assert "ENV SCHEDULER_CONFIG=/app/project/campaigns.yaml" in lines
    assert not any(re.match(r"(COPY|ADD)\b.*\.env\b", line) for line in lines)


def test_dockerignore_keeps_secrets_out_of_the_build_context() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "allow-list: nothing enters the context unless named"
    reincluded = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    assert reincluded == {"pyproject.toml", "README.md", "scheduler"}


def test_env_example_names_every_secret() -> None:
    _, mentioned = env_example()
    in_campaigns = campaign_secrets()
    assert in_campaigns, "campaigns.yaml refers to no ${VAR}?"
    assert in_campaigns <= mentioned, sorted(in_campaigns - mentioned)
    assert "SCHEDULER_SECRET_KEY" in mentioned
    in_compose = set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", COMPOSE.read_text("utf-8")))
    assert in_compose <= mentioned, sorted(in_compose - mentioned)


def test_env_example_holds_no_secret_and_no_empty_value() -> None:
    assigned, _ = env_example()
    assert "POSTGRES_PASSWORD" in assigned  # the one local default
    empty = sorted(k for k, v in assigned.items() if v == "")
    assert not empty, f"an empty value counts as set; comment these out: {empty}"
    secrets = campaign_secrets() - {"SMTP_URL"} | {"SCHEDULER_SECRET_KEY", "SMTP_PASSWORD"}
    assert not secrets & set(assigned), sorted(secrets & set(assigned))


# --- every command and service named exists ----------------------------------------------------


def subcommands(command: Any) -> dict[str, Any] | None:
    """A command group's commands by name; None for a plain command.

    Duck-typed: recent typer releases ship their own copy of click, so its groups are not
    instances of `click.Group`.
    """
    commands = getattr(command, "commands", None)
    return dict(commands) if isinstance(commands, dict) else None


def cli_commands() -> dict[str, Any]:
    from scheduler.cli import app

    commands = subcommands(typer.main.get_command(app))
    assert commands, "scheduler.cli.app has no commands?"
    return commands


# `scheduler` as a word (not campaign-scheduler, scheduler/cli.py or scheduler.tasks), global
# options or [bracketed] placeholders, then the command and the word after it.
SCHEDULER_CALL = re.compile(
    r"(?<![^\s`'\"(/])scheduler"
    r"(?:\s+(?:\[[^\]\n]*\]|-c\s+\S+|--config(?:=|\s+)\S+))*"
    r"\s+(?P<command>[a-z][a-z0-9-]*)(?:[ \t]+(?P<sub>[a-z][a-z0-9-]*))?"
)


def readme_code() -> list[tuple[str, str]]:
    """(where, line) of every line inside README.md's fenced code blocks."""
    out, fenced = [], False
    for n, line in enumerate(README.read_text(encoding="utf-8").splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif fenced:
            out.append((f"README.md:{n}", line))
    return out


def compose_lines() -> list[tuple[str, str]]:
    """docker-compose.yml's lines, plus each service's command and healthcheck as words."""
    text = COMPOSE.read_text(encoding="utf-8")
    out = [(f"docker-compose.yml:{n}", line) for n, line in enumerate(text.splitlines(), 1)]
    for name, svc in compose()["services"].items():
        for key in ("command", "entrypoint"):
            out.append(
                (f"docker-compose.yml services.{name}.{key}", shlex.join(argv(svc.get(key))))
            )
        test = argv((svc.get("healthcheck") or {}).get("test"))
        out.append((f"docker-compose.yml services.{name}.healthcheck", " ".join(test)))
    return out


def dockerfile_lines() -> list[tuple[str, str]]:
    """The Dockerfile's lines, exec-form (JSON) CMD and ENTRYPOINT written as words."""
    out = []
    for n, line in enumerate(DOCKERFILE.read_text(encoding="utf-8").splitlines(), 1):
        m = re.match(r"^\s*(CMD|ENTRYPOINT|RUN)\s+(\[.*\])\s*$", line)
        if m:
            line = f"{m[1]} " + shlex.join(json.loads(m[2]))
        out.append((f"Dockerfile:{n}", line))
    return out


SOURCES = {
    "docker-compose.yml": compose_lines,
    "Dockerfile": dockerfile_lines,
    "README.md code blocks": readme_code,
}


def scheduler_calls(lines: list[tuple[str, str]]) -> list[tuple[str, str, str | None]]:
    return [(n, m["command"], m["sub"]) for n, line in lines for m in SCHEDULER_CALL.finditer(line)]


@pytest.mark.parametrize("source", list(SOURCES))
def test_every_scheduler_command_named_exists(source: str) -> None:
    commands = cli_commands()
    calls = scheduler_calls(SOURCES[source]())
    assert calls, f"{source} names no `scheduler` command?"
    unknown = []
    for where, command, sub in calls:
        if command not in commands:
            unknown.append(f"{where}: scheduler {command}")
            continue
        group = subcommands(commands[command])
        if group is not None and sub is not None and sub not in group:
            unknown.append(f"{where}: scheduler {command} {sub}")
    assert not unknown, (
        "named but not commands of the CLI (`scheduler --help` lists "
        f"{', '.join(sorted(commands))}):\n" + "\n".join(unknown)
    )


# `docker compose ... SUBCOMMAND ... SERVICE`: options that take a value, and subcommands whose
# positional arguments are services (run and exec: the first one only).
VALUE_OPTIONS = {
    "-f", "--file", "-p", "--project-name", "--project-directory", "--profile", "--env-file",
    "--scale", "-t", "--timeout", "--tail", "-e", "--env", "-u", "--user", "-w", "--workdir",
    "--entrypoint", "--name", "-s", "--signal", "-l", "--label", "--index",
}  # fmt: skip
SERVICE_ARGS = {"up", "start", "stop", "restart", "logs", "ps", "kill", "rm", "pull", "build",
                "create", "pause", "unpause", "top", "events", "images", "port"}  # fmt: skip
ONE_SERVICE = {"run", "exec"}


def compose_services_named(line: str) -> list[str]:
    m = re.search(r"\bdocker(?:-compose| compose)\b(.*)", line)
    if not m:
        return []
    try:
        words = shlex.split(m[1], comments=True)
    except ValueError:
        return []
    named, sub, i = [], None, 0
    while i < len(words):
        word = words[i]
        if word in ("&&", "||", ";", "|"):
            break
        if word.startswith("-"):
            option, eq, value = word.partition("=")
            if not eq and option in VALUE_OPTIONS:
                i += 1
                value = words[i] if i < len(words) else ""
            if option == "--scale":
                named.append(value.split("=")[0])
        elif sub is None:
            sub = word
        elif sub in SERVICE_ARGS:
            named.append(word)
        elif sub in ONE_SERVICE:
            named.append(word)
            break
        i += 1
    return named


@pytest.mark.parametrize("source", ["docker-compose.yml", "README.md code blocks"])
def test_every_compose_service_named_exists(source: str) -> None:
    lines = compose_lines() if source == "docker-compose.yml" else readme_code()
    services = set(compose()["services"])
    unknown = [
        f"{where}: {name}"
        for where, line in lines
        for name in compose_services_named(line)
        if name not in services
    ]
    assert not unknown, "not services of docker-compose.yml:\n" + "\n".join(unknown)


def test_the_command_extractors() -> None:
    found = scheduler_calls(
        [
            ("1", ".venv/bin/scheduler validate && .venv/bin/scheduler plan --days 365"),
            ("2", "scheduler [-c FILE] lists import LIST FILE.csv"),
            ("3", "scheduler -c my.yaml send may-day  # `scheduler web` later"),
            ("4", "campaign-scheduler:local, scheduler/cli.py, scheduler.tasks, the scheduler"),
        ]
    )
    assert [(n, c) for n, c, _ in found] == [
        ("1", "validate"), ("1", "plan"), ("2", "lists"), ("3", "send"), ("3", "web"),
    ]  # fmt: skip
    assert found[2][2] == "import"
    assert compose_services_named("docker compose --profile web up -d --scale worker=4") == [
        "worker"
    ]
    assert compose_services_named("docker compose up -d --scale worker=4 clock") == [
        "worker",
        "clock",
    ]
    assert compose_services_named("docker-compose -f x.yml run --rm worker scheduler status") == [
        "worker"
    ]
    assert compose_services_named("docker compose kill -s HUP clock") == ["clock"]
