"""Layout rules that keep the project installable. The layers' import rules are import-linter contracts in
pyproject.toml ([tool.importlinter]), checked by `lint-imports` in `make test`."""

from __future__ import annotations

import tomllib

from conftest import REPO


def test_every_package_is_listed_in_pyproject() -> None:
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(REPO).parts)
        for top in ("runtime", "tarx_console")
        for init in (REPO / top).rglob("__init__.py")
    }
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"
    assert "tarx_console.themes" in listed and len(list((REPO / "themes").glob("*.toml"))) >= 3
