"""The container path without a Docker daemon: docker/Dockerfile, docker/compose.yaml,
docker/nginx.conf and .dockerignore read as Docker would, and the image's user and folders
replayed with an unprivileged user on this machine."""

from __future__ import annotations

import os
import re
import shlex
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from mdm.roots.cli import main

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "docker" / "Dockerfile").read_text()
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
NGINX = (ROOT / "docker" / "nginx.conf").read_text()


def _run_lines() -> list[str]:
    """The shell commands of every RUN instruction, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    return [line[4:] for line in joined.splitlines() if line.startswith("RUN ")]


def _image_user() -> tuple[str, int]:
    for run in _run_lines():
        for command in run.split("&&"):
            words = shlex.split(command)
            if words and words[0] == "useradd":
                return words[-1], int(words[words.index("--uid") + 1])
    raise AssertionError("the Dockerfile creates no user")


def _image_folders() -> dict[str, tuple[str, int]]:
    """{path: (owner, mode)} of the folders the Dockerfile creates with `install -d`."""
    found = {}
    for run in _run_lines():
        for command in run.split("&&"):
            words = shlex.split(command)
            if words[:2] == ["install", "-d"]:
                owner, mode = words[words.index("-o") + 1], int(words[words.index("-m") + 1], 8)
                paths = [w for w in words[2:] if w.startswith("/")]
                found.update({p: (owner, mode) for p in paths})
    return found


def _env_of_image() -> dict[str, str]:
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    env: dict[str, str] = {}
    for line in joined.splitlines():
        if line.startswith("ENV "):
            env.update(dict(pair.split("=", 1) for pair in shlex.split(line[4:])))
    return env


def _mount_targets(service: dict[str, Any]) -> dict[str, str]:
    """{named volume: target} of a service."""
    return {
        volume.split(":")[0]: volume.split(":")[1]
        for volume in service.get("volumes", [])
        if not volume.startswith(".")
    }


def test_every_named_volume_of_the_app_is_a_folder_the_image_owns():
    user, _uid = _image_user()
    folders = _image_folders()
    app = COMPOSE["services"]["app"]
    targets = _mount_targets(app)
    assert targets["instance"] == _env_of_image()["HIKESHI_INSTANCE_PATH"]
    for volume, target in targets.items():
        assert folders.get(target) == (user, 0o700), (
            f"{volume} at {target} must exist in the image, owned by {user}"
        )
    assert re.search(rf"^USER {user}$", DOCKERFILE, re.M)


def test_every_service_restarts_and_reports_its_health():
    services = COMPOSE["services"]
    assert {"proxy", "app", "db"} <= set(services)
    for name, service in services.items():
        assert service.get("restart") in ("unless-stopped", "always"), name
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    app = services["app"]
    serve = " ".join(app["command"])
    port = re.search(r"--port (\d+)", serve).group(1)  # type: ignore[union-attr]
    assert f"127.0.0.1:{port}/healthz" in " ".join(app["healthcheck"]["test"])
    assert f"127.0.0.1:{port}/healthz" in DOCKERFILE  # the image's own HEALTHCHECK
    assert app["depends_on"]["db"]["condition"] == "service_healthy"
    assert services["proxy"]["depends_on"]["app"]["condition"] == "service_healthy"


def test_only_the_tls_proxy_is_published_and_it_passes_client_certificates():
    services = COMPOSE["services"]
    assert "ports" not in services["app"] and "ports" not in services["db"]
    proxy = services["proxy"]
    assert proxy["image"].split(":")[0] in ("nginx", "caddy")  # an official image
    assert "443:443" in proxy["ports"]
    app_port = re.search(r"--port (\d+)", " ".join(services["app"]["command"])).group(1)  # type: ignore[union-attr]
    assert f"proxy_pass http://app:{app_port};" in NGINX
    assert re.search(r"listen 443 ssl;", NGINX)
    header = services["app"]["environment"]["HIKESHI_CLIENT_CERT_HEADER"]
    # Set on every request, so a client's own header of that name never reaches the app.
    assert f"proxy_set_header {header} $ssl_client_escaped_cert;" in NGINX
    assert "ssl_verify_client optional_no_ca;" in NGINX
    assert services["app"]["environment"]["HIKESHI_PUBLIC_URL"].startswith("${HIKESHI_PUBLIC_URL:?")
    health = " ".join(proxy["healthcheck"]["test"])
    path = re.search(r"http://127\.0\.0\.1(/\S+)", health).group(1)  # type: ignore[union-attr]
    assert f"location = {path} {{" in NGINX
    # The app never mounts the folder holding the server's private key.
    assert not any(v.startswith("./tls") for v in services["app"]["volumes"])
    mounted = {v.split(":")[0]: v.split(":")[1] for v in proxy["volumes"]}
    assert mounted["./nginx.conf"] == "/etc/nginx/conf.d/default.conf"
    for path in re.findall(r"ssl_certificate(?:_key)?\s+(\S+);", NGINX):
        assert path.startswith(mounted["./tls"] + "/")


def test_pg_dump_in_the_image_matches_the_database_server():
    server_major = COMPOSE["services"]["db"]["image"].split(":")[1].split(".")[0]
    default = re.search(r"^ARG PG_MAJOR=(\d+)$", DOCKERFILE, re.M)
    assert default is not None and default.group(1) == server_major
    assert COMPOSE["services"]["app"]["build"]["args"]["PG_MAJOR"] == server_major
    installs = " ".join(_run_lines())
    assert '"postgresql-client-${PG_MAJOR}"' in installs and "apt.postgresql.org.sh" in installs
    # Pinned to the Debian release the PostgreSQL repository script is run on.
    assert re.search(r"^FROM python:3\.\d+-slim-bookworm$", DOCKERFILE, re.M)


def _dockerignore_excludes(path: str) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes."""
    import fnmatch

    excluded = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        candidates = [pattern, pattern.replace("**/", "")]
        parts = path.split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        if any(fnmatch.fnmatch(prefix, c) for prefix in prefixes for c in candidates):
            excluded = not negate
    return excluded


def test_the_build_context_holds_no_secret_and_everything_copied():
    for private in (
        ".venv/bin/python",
        "instance/secret_key",
        ".git/config",
        ".env",
        "mdm/instance/secret_key",
    ):
        assert _dockerignore_excludes(private), private
    for line in DOCKERFILE.splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            for source in shlex.split(line)[1:-1]:
                assert not _dockerignore_excludes(
                    source.rstrip("/") + "/x.py" if "." not in source else source
                ), source


@pytest.fixture
def image_root() -> Iterator[Path]:
    """A folder an unprivileged user can reach (pytest's tmp_path is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="hikeshi-image-"))
    folder.chmod(0o755)
    yield folder
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


def _as_user(uid: int, env: dict[str, str], *args: str) -> tuple[int, str]:
    """Run a CLI command in a child process that has dropped to `uid`, like the container's
    `USER`. The child is forked from this process, whose interpreter may live where that user
    cannot read (so it cannot be started anew); everything the command imports is loaded first."""
    CliRunner().invoke(main, ["--help"])
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 99
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            os.environ.clear()
            os.environ.update(env)
            result = CliRunner().invoke(main, list(args))
            os.write(write, (result.output or "").encode()[-4000:])
            code = result.exit_code
        finally:
            os._exit(code)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 4096):
        chunks.append(chunk)
    os.close(read)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode(errors="replace")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create an unprivileged user's folders")
def test_the_image_user_can_start_in_its_folders_and_a_root_owned_volume_is_explained(image_root):
    user, uid = _image_user()
    instance_path = _env_of_image()["HIKESHI_INSTANCE_PATH"]
    # The image as the Dockerfile builds it; a new named volume starts as a copy of the folder.
    for path, (owner, mode) in _image_folders().items():
        assert owner == user
        folder = image_root / path.lstrip("/")
        folder.mkdir(parents=True)
        for parent in [folder, *folder.relative_to(image_root).parents]:
            (image_root / parent).chmod(0o755)
        folder.chmod(mode)
        os.chown(folder, uid, uid)
    instance = image_root / instance_path.lstrip("/")
    env = {"HIKESHI_INSTANCE_PATH": str(instance), "PATH": "/usr/bin:/bin"}
    code, output = _as_user(uid, env, "db", "upgrade")
    assert code == 0, output
    secret = instance / "secret_key"
    assert secret.stat().st_uid == uid and secret.stat().st_mode & 0o777 == 0o600

    # What Docker did before: a volume created by root. The command fails in one line naming
    # the folder, not with a traceback.
    root_owned = image_root / "root-owned-volume"
    root_owned.mkdir(mode=0o755)
    code, output = _as_user(uid, {**env, "HIKESHI_INSTANCE_PATH": str(root_owned)}, "db", "upgrade")
    assert code == 1 and str(root_owned) in output and "Traceback" not in output


def test_the_readme_production_commands_name_this_compose_file_and_its_services():
    readme = (ROOT / "README.md").read_text()
    production = readme.split("\n## Production\n", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^docker compose -f (\S+) (?:run --rm (\w+) (.+)|up .+)$", production, re.M)
    assert len(commands) == 3
    for compose_file, service, _command in commands:
        assert (ROOT / compose_file).resolve() == (ROOT / "docker" / "compose.yaml").resolve()
        assert not service or service in COMPOSE["services"]
    assert ("docker/compose.yaml", "app", "hikeshi user bootstrap") in commands
    assert ("docker/compose.yaml", "app", "hikeshi doctor") in commands
