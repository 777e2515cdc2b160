"""The console's configuration: its [console] table, theme persistence that keeps the file, and `tarx` without a
terminal."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import REPO
from tarx_console.config import ConsoleConfig, set_console_key


def test_set_console_key_keeps_everything_else() -> None:
    assert set_console_key("", "theme", "nord") == '[console]\ntheme = "nord"\n'
    text = 'port = 1\n\n[console]\n# mine\ntheme = "x"\nmouse = false\n\n[other]\ntheme = "keep"\n'
    out = set_console_key(text, "theme", "nord")
    assert out == 'port = 1\n\n[console]\n# mine\ntheme = "nord"\nmouse = false\n\n[other]\ntheme = "keep"\n'
    assert set_console_key("port = 1\n", "theme", "nord") == 'port = 1\n\n[console]\ntheme = "nord"\n'
    assert set_console_key("[console]\nmouse = false\n", "theme", "a") == '[console]\ntheme = "a"\nmouse = false\n'


def test_config_reads_the_console_table(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('port = 2\n[console]\ntheme = "nord"\nmouse = false\nthemes_dir = "~/t"\n'
                    '[console.keymap]\n"jobs.submit" = "ctrl+n"\n')
    config = ConsoleConfig.load(path)
    assert (config.theme, config.mouse, config.keymap) == ("nord", False, {"jobs.submit": "ctrl+n"})
    assert config.themes_dir == Path("~/t").expanduser()
    config.save_theme("tarx-light")
    assert ConsoleConfig.load(path).theme == "tarx-light" and "port = 2" in path.read_text()
    assert ConsoleConfig.load(tmp_path / "missing.toml").theme == "tarx-dark"


def test_tarx_without_a_terminal_points_to_headless_mode(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "tarx_console"], cwd=REPO, capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL, env={"PATH": "/usr/bin:/bin", "TARX_CONFIG_DIR": str(tmp_path),
                                                      "TARX_DATA_DIR": str(tmp_path / "d")})
    assert r.returncode == 2 and "tarx serve --headless" in r.stderr
