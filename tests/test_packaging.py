"""Layout rules that keep the project installable and its layers apart."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

from conftest import REPO


def _modules(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


def test_every_package_is_listed_in_pyproject() -> None:
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(REPO).parts)
        for top in ("runtime", "tarx_console")
        for init in (REPO / top).rglob("__init__.py")
    }
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"
    assert "tarx_console.themes" in listed and len(list((REPO / "themes").glob("*.toml"))) >= 3


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _offenders(package: str, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(REPO)} imports {name}"
        for path in _modules(package)
        for name in _imports(path)
        if name.split(".")[0] in forbidden or any(name.startswith(f + ".") or name == f for f in forbidden)
    ]


def test_runtime_never_imports_the_console_or_textual() -> None:
    assert _offenders("runtime", ("textual", "tarx_console")) == []


def test_console_client_never_imports_textual() -> None:
    assert _offenders("tarx_console/client", ("textual",)) == []


def test_domain_code_does_not_import_fastapi() -> None:
    assert _offenders("runtime/inference", ("fastapi", "starlette")) == []
    assert _offenders("runtime/store", ("fastapi", "starlette")) == []
