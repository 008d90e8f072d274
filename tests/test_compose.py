"""docker-compose.yml, its Dockerfiles and .env.example agree with each other and with the repo.

These machines have no Docker engine, so nothing here builds or runs an image: the tests read the
files the way `docker compose` and `docker build` would and check what would break a real start.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
POSTGRES_DOCKERFILE = ROOT / "docker" / "postgres" / "Dockerfile"
SERVER_CONFIG = "config/postgresql.waybill.conf"
SAMPLE_CONF = "/usr/share/postgresql/postgresql.conf.sample"

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message}, ${VAR?message}, ${VAR:+alt}, and $VAR;
# `$$` is an escaped dollar sign.
VAR_RE = re.compile(
    r"\$\$|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?+])?(?P<arg>[^}]*)\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)
SECRET_NAME_RE = re.compile(r"PASSWORD|SECRET|TOKEN|KEY")


# -- readers ---------------------------------------------------------------------------------------
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def services() -> dict[str, dict]:
    return compose()["services"]


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f".env.example: not NAME=value: {line!r}"
            values[name.strip()] = value.strip()
    return values


def interpolate(text: str, env: dict[str, str]) -> str:
    """Substitute variables as compose does (enough for the forms VAR_RE knows)."""

    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group("braced") or m.group("bare")
        op, arg = m.group("op") or "", m.group("arg") or ""
        value = env.get(name)
        if op in (":-", "-") and (value is None or (op == ":-" and value == "")):
            return arg
        if op in (":?", "?") and (value is None or (op == ":?" and value == "")):
            raise KeyError(f"{name}: {arg}")
        if op in (":+", "+"):
            return arg if value else ""
        return value or ""

    return VAR_RE.sub(sub, text)


@dataclass
class Instruction:
    keyword: str
    args: str


def dockerfile(path: Path) -> list[Instruction]:
    """A Dockerfile's instructions, continuation lines joined and comments dropped."""
    instructions, pending = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and (not line or line.startswith("#")):
            continue  # blank and comment lines inside a continued instruction are dropped
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip()))
        pending = ""
    assert not pending, f"{path}: instruction continued past the end of the file"
    return instructions


def copy_args(instruction: Instruction) -> tuple[list[str], list[str], str]:
    """(flags, sources, destination) of a COPY/ADD, shell or JSON form."""
    args = instruction.args
    flags = []
    while args.startswith("--"):
        flag, _, args = args.partition(" ")
        flags.append(flag)
        args = args.strip()
    parts = json.loads(args) if args.startswith("[") else shlex.split(args)
    assert len(parts) >= 2, f"{instruction.keyword} needs a source and a destination: {args!r}"
    return flags, parts[:-1], parts[-1]


def built_services() -> list[tuple[str, Path, Path]]:
    """(service, build context, Dockerfile) for each service compose builds."""
    out = []
    for name, svc in services().items():
        build = svc.get("build")
        if build is None:
            continue
        if isinstance(build, str):
            build = {"context": build}
        context = (ROOT / build.get("context", ".")).resolve()
        out.append((name, context, context / build.get("dockerfile", "Dockerfile")))
    return out


def image_refs() -> list[str]:
    """Every base image (FROM lines naming no earlier stage) and every `image:` compose pulls."""
    refs = []
    for _, _, path in built_services():
        stages = set()
        for ins in dockerfile(path):
            if ins.keyword == "FROM":
                words = [w for w in ins.args.split() if not w.startswith("--")]
                if words[0] not in stages:
                    refs.append(words[0])
                if len(words) == 3 and words[1].upper() == "AS":
                    stages.add(words[2])
    refs += [svc["image"] for svc in services().values() if "image" in svc and "build" not in svc]
    return refs


def conf_settings(path: Path) -> dict[str, str]:
    """name -> value of a postgresql.conf-style file; the last assignment wins, as in the server."""
    settings = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        m = re.fullmatch(r"([A-Za-z_][\w.]*)\s*=?\s*(.+)", line)
        if m:
            settings[m.group(1).lower()] = m.group(2).strip().strip("'")
    return settings


def seconds(duration: str) -> float:
    """A compose duration (`30s`, `1m30s`, `500ms`) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|us|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"not a duration: {duration!r}"
    return sum(float(n) * units[u] for n, u in parts)


def copied_sources(path: Path) -> set[str]:
    """What a Dockerfile copies from its build context (trailing slashes dropped)."""
    out = set()
    for ins in dockerfile(path):
        if ins.keyword in ("COPY", "ADD"):
            flags, sources, _ = copy_args(ins)
            if not any(f.startswith("--from") for f in flags):
                out |= {s.rstrip("/") for s in sources}
    return out


def repo_packages() -> set[str]:
    """The top-level packages `pip install .` finds in the repository (pyproject's packages.find)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    return {
        d.name
        for d in ROOT.iterdir()
        if (d / "__init__.py").is_file() and any(fnmatch.fnmatch(d.name, pattern) for pattern in include)
    }


# Imports every module of the packages in argv[1] while those in argv[2] cannot be found; prints the
# failures. `__main__` modules are left out: importing one runs the command.
IMPORT_EVERY_MODULE = """
import importlib, importlib.abc, pkgutil, sys

present, absent = sys.argv[1].split(","), set(sys.argv[2].split(",")) - {""}


class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in absent:
            raise ImportError(f"no module named {name!r} in the image")


sys.meta_path.insert(0, Absent())
failed = []
for package in present:
    for info in pkgutil.walk_packages(importlib.import_module(package).__path__, package + "."):
        if not info.name.endswith(".__main__"):
            try:
                importlib.import_module(info.name)
            except ImportError as exc:
                failed.append(f"{info.name}: {exc}")
print("\\n".join(failed))
"""


# -- compose ---------------------------------------------------------------------------------------
def test_compose_has_the_core_services():
    assert {"db", "migrate"} <= set(services())


@pytest.mark.parametrize("service", [s for s, _, _ in built_services()])
def test_build_context_and_dockerfile_exist(service):
    _, context, path = next(b for b in built_services() if b[0] == service)
    assert context.is_dir(), f"{service}: build context {context} is missing"
    assert path.is_file(), f"{service}: Dockerfile {path} is missing"


@pytest.mark.parametrize("service", [s for s, _, _ in built_services()])
def test_every_copied_file_exists_and_reaches_the_build(service):
    _, context, path = next(b for b in built_services() if b[0] == service)
    ignore = path.with_name(path.name + ".dockerignore")
    allowed = None
    if ignore.exists():  # an allow-list: `*`, then `!path` for each thing the Dockerfile copies
        lines = [ln.strip() for ln in ignore.read_text().splitlines()]
        allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    copies = [i for i in dockerfile(path) if i.keyword in ("COPY", "ADD")]
    assert copies, f"{path} copies nothing"
    for ins in copies:
        flags, sources, _ = copy_args(ins)
        if any(f.startswith("--from") for f in flags):
            continue
        for src in sources:
            assert not src.startswith(("/", "..")), f"{path}: {src} leaves the build context"
            matches = list(context.glob(src.rstrip("/"))) if "*" in src else [context / src]
            assert matches and all(m.exists() for m in matches), (
                f"{path}: COPY {src} — not found in build context {context}"
            )
            if allowed is not None:
                src = src.rstrip("/")
                assert any(src == a or src.startswith(a + "/") for a in allowed), (
                    f"{ignore.name} excludes {src}, which {path} copies"
                )


def test_an_image_copies_every_package_its_packages_import():
    """`pip install .` in an image installs only the packages its Dockerfile copied; a module of one that
    imports a package left out fails at run time (waybill metrics-cache needs gateway/ for
    waybill/errors.py). Checked from the checkout, with the left-out packages made unfindable."""
    packages = repo_packages()
    assert {"waybill", "dispatcher"} <= packages, packages
    for path in sorted({path for _, _, path in built_services()}):
        present = packages & copied_sources(path)
        if not present:
            continue  # installs nothing of ours (the postgres image)
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                IMPORT_EVERY_MODULE,
                ",".join(sorted(present)),
                ",".join(packages - present),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        assert not proc.stdout.strip(), f"{path.relative_to(ROOT)} copies too little:\n{proc.stdout}"


def test_every_variable_is_defined_in_env_example():
    used = {m.group("braced") or m.group("bare") for m in VAR_RE.finditer(COMPOSE_FILE.read_text())}
    used.discard(None)
    assert used, "docker-compose.yml should take its secrets from variables"
    missing = used - set(env_example())
    assert not missing, f"used in docker-compose.yml, missing from .env.example: {sorted(missing)}"


def test_secrets_are_required_and_only_placeholders_are_committed():
    text = COMPOSE_FILE.read_text()
    for m in VAR_RE.finditer(text):
        name = m.group("braced") or m.group("bare")
        if name and SECRET_NAME_RE.search(name):
            assert m.group("op") == ":?" and m.group("arg"), (
                f"secret {name} must be written ${{{name}:?message}}, found {m.group(0)!r}"
            )
    env = env_example()
    for name, value in env.items():
        if SECRET_NAME_RE.search(name):
            assert value.startswith("change-me"), f".env.example: {name} is not a placeholder"
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD"):
        interpolate(text, {k: v for k, v in env.items() if k != "POSTGRES_PASSWORD"})


def published_ports() -> list[tuple[str, str, str]]:
    """(service, host ip, host port) of every published port, variables filled from .env.example."""
    env, out = env_example(), []
    for name, svc in services().items():
        for port in svc.get("ports", []):
            if isinstance(port, dict):  # long syntax
                ip, published = port.get("host_ip", ""), str(port.get("published", ""))
            else:
                parts = interpolate(str(port), env).rsplit(":", 2)
                ip, published = (parts[0], parts[1]) if len(parts) == 3 else ("", parts[0])
            out.append((name, interpolate(ip, env), interpolate(published, env)))
    return out


def test_ports_are_published_on_loopback_only_and_unique():
    ports = published_ports()
    assert ("db", "127.0.0.1", env_example()["WAYBILL_DB_PORT"]) in ports
    for service, ip, published in ports:
        assert ip == "127.0.0.1", f"{service}: port {published} is published on {ip or 'all'}"
        assert published.isdigit(), f"{service}: host port must be fixed, got {published!r}"
    host_ports = [p for _, _, p in ports]
    assert len(host_ports) == len(set(host_ports)), f"host port published twice: {ports}"


def test_depends_on_names_defined_services():
    defined = set(services())
    for name, svc in services().items():
        deps = svc.get("depends_on", [])
        for dep in deps if isinstance(deps, list) else deps.keys():
            assert dep in defined, f"{name} depends on undefined service {dep}"
            assert dep != name, f"{name} depends on itself"


def test_migrate_waits_for_a_healthy_db_and_runs_once():
    svcs = services()
    db, migrate = svcs["db"], svcs["migrate"]
    assert "pg_isready" in db["healthcheck"]["test"]
    assert migrate["depends_on"]["db"]["condition"] == "service_healthy"
    assert migrate["restart"] == "no"
    assert any(v.split(":")[-1] == "/var/lib/postgresql/data" for v in db["volumes"])
    url = interpolate(migrate["environment"]["DATABASE_URL"], env_example())
    db_name = db["environment"]["POSTGRES_DB"]
    assert re.fullmatch(rf"postgresql://postgres:[^@/]+@db:5432/{db_name}", url), url


# -- images ----------------------------------------------------------------------------------------
def test_images_are_pinned():
    refs = image_refs()
    assert any(r.startswith("postgres:") for r in refs), refs
    for ref in refs:
        name, _, tag = ref.partition("@")[0].rpartition(":")
        assert name and "/" not in tag, f"{ref}: no tag"
        assert tag != "latest", f"{ref}: floating tag"
        assert re.match(r"v?\d+\.\d+", tag), f"{ref}: tag names no minor version"
    postgres = [r for r in refs if r.startswith("postgres:")]
    pinned = re.compile(r"postgres:15\.\d+-bookworm(@sha256:[0-9a-f]{64})?")
    assert postgres and all(pinned.fullmatch(r) for r in postgres), postgres


def test_postgres_image_installs_extensions_and_includes_the_config():
    instructions = dockerfile(POSTGRES_DOCKERFILE)
    runs = " ".join(i.args for i in instructions if i.keyword == "RUN")
    install = re.search(r"apt-get install ([^;&|]+)", runs)
    assert install, "the postgres image installs nothing with apt-get"
    packages = set(install.group(1).split())
    assert {"postgresql-15-cron", "postgresql-15-pgtap"} <= packages

    copies = [copy_args(i) for i in instructions if i.keyword == "COPY"]
    targets = [dest for _, sources, dest in copies if sources == [SERVER_CONFIG]]
    assert len(targets) == 1, f"{POSTGRES_DOCKERFILE} must copy {SERVER_CONFIG} once"
    # The copied file must be what the generated postgresql.conf includes.
    include = re.search(r"include '([^']+)'.*>>\s*([^\s;&|]+)", runs)
    assert include, "nothing appends an include line to the sample postgresql.conf"
    assert include.group(1) == targets[0]
    assert include.group(2) == SAMPLE_CONF


def test_server_config_preloads_the_extensions_and_targets_the_compose_database():
    settings = conf_settings(ROOT / SERVER_CONFIG)
    libraries = {lib.strip() for lib in settings["shared_preload_libraries"].split(",")}
    assert {"pg_cron", "pg_stat_statements", "auto_explain"} <= libraries
    assert settings["cron.database_name"] == services()["db"]["environment"]["POSTGRES_DB"]
    assert not settings["log_directory"].startswith("/"), "logs stay inside the data directory"


def test_postgrest_serves_api_as_the_gateway_does():
    """PostgREST is pinned to one v13 patch release and configured like gateway/ (schema, roles, ports)."""
    svcs = services()
    pgrst = svcs["postgrest"]
    assert re.fullmatch(r"postgrest/postgrest:v13\.0\.\d+", pgrst["image"]), pgrst["image"]
    env = {k: interpolate(str(v), env_example()) for k, v in pgrst["environment"].items()}
    assert env["PGRST_DB_SCHEMAS"] == "api"
    assert env["PGRST_DB_ANON_ROLE"] == "anon"
    assert re.fullmatch(r"postgresql://authenticator:[^@/]+@db:5432/waybill", env["PGRST_DB_URI"])
    assert env["PGRST_ADMIN_SERVER_PORT"] == "3001" and env["PGRST_SERVER_PORT"] == "3000"
    assert pgrst["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert "WAYBILL_AUTHENTICATOR_PASSWORD" in svcs["migrate"]["environment"]
    assert "gateway" not in svcs


def test_dispatcher_runs_from_the_migrate_image_as_the_role_migrate_gives_a_password():
    """`waybill dispatcher` logs in as `dispatcher` with the password `waybill migrate` set, once migrate is
    done; its status port listens beyond the container's loopback and is published on the host's only."""
    from dispatcher.config import DispatcherSettings

    svcs = services()
    disp, migrate = svcs["dispatcher"], svcs["migrate"]
    assert disp["build"] == migrate["build"], "the dispatcher runs from the waybill package image"
    _, _, image = next(b for b in built_services() if b[0] == "dispatcher")
    assert "dispatcher" in copied_sources(image), f"{image} does not copy dispatcher/"
    assert disp["command"] == ["waybill", "dispatcher"]
    assert disp["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert disp["restart"] == "unless-stopped"

    def default(name: str) -> object:
        return DispatcherSettings.model_fields[name].default

    raw = disp["environment"]
    settings = {f"WAYBILL_{name.upper()}" for name in DispatcherSettings.model_fields}
    assert set(raw) <= settings, f"not dispatcher settings: {sorted(set(raw) - settings)}"
    assert "WAYBILL_DISPATCHER_NAME" not in raw, "replicas would share one name in leases and heartbeats"
    # The password travels beside the URL (never inside it), from the variable migrate sets it from.
    assert raw["WAYBILL_DISPATCHER_PASSWORD"] == migrate["environment"]["WAYBILL_DISPATCHER_PASSWORD"]
    assert re.fullmatch(r"\$\{DISPATCHER_PASSWORD:\?[^}]+\}", raw["WAYBILL_DISPATCHER_PASSWORD"])
    env = {k: interpolate(str(v), env_example()) for k, v in raw.items()}
    assert env["WAYBILL_DISPATCHER_DATABASE_URL"] == "postgresql://dispatcher@db:5432/waybill"

    assert env["WAYBILL_DISPATCHER_STATUS_HOST"] == "0.0.0.0"
    port = env.get("WAYBILL_DISPATCHER_STATUS_PORT", str(default("dispatcher_status_port")))
    published = [(ip, host) for service, ip, host in published_ports() if service == "dispatcher"]
    assert published == [("127.0.0.1", env_example()["WAYBILL_DISPATCHER_STATUS_PORT"])], published
    assert all(str(p).endswith(f":{port}") for p in disp["ports"]), disp["ports"]
    assert "/healthz" in (ROOT / "dispatcher" / "metrics.py").read_text()
    assert f"http://127.0.0.1:{port}/healthz" in " ".join(disp["healthcheck"]["test"])

    # SIGTERM: in-flight POSTs get the HTTP timeout + 1 s (dispatcher/daemon.py), then the release of the
    # rest and a last heartbeat may each wait the pool timeout for a connection.
    http_timeout = float(env.get("WAYBILL_DISPATCHER_HTTP_TIMEOUT", default("dispatcher_http_timeout")))
    pool_timeout = float(env.get("WAYBILL_DISPATCHER_POOL_TIMEOUT", default("dispatcher_pool_timeout")))
    assert seconds(disp["stop_grace_period"]) > http_timeout + 1 + 2 * pool_timeout


def test_docs_the_readme_and_stack_files_cite_are_in_the_repository():
    """A comment that sends the reader to docs/X.md must find it (paths beside the repo, ../shared/…, excepted)."""
    files = [ROOT / "README.md", COMPOSE_FILE, *sorted((ROOT / "docker").rglob("*")), ENV_EXAMPLE]
    cited = set()
    for f in files:
        if f.is_file():
            cited |= {
                (f.name, m)
                for m in re.findall(r"(?<![\w./])((?:docs|gateway|bench)/[\w./-]+\.md)", f.read_text())
            }
    assert cited, "no citation found: the pattern is wrong"
    missing = [(name, path) for name, path in cited if not (ROOT / path).exists()]
    assert not missing, missing
