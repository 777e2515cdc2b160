"""Console themes as data: one TOML file per theme (see tarx_console/theming.py)."""
