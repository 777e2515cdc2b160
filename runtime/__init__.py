"""The TARX local runtime. Never imports textual or tarx_console."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tarx")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
