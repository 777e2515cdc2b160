"""llama.cpp's C API for a model's runner: llama-cpp-python's ctypes binding without the package's high-level layer.

`import llama_cpp` runs the package's `__init__`, which imports the high-level `Llama` and with it numpy, Jinja2 chat
formats, a disk cache and SQLite: 20 MiB of each runner's resident memory for code a runner that decodes through the
C API never calls. `c_api_only()` gives the `llama_cpp` package only what the first line of its `__init__` gives it
(`from .llama_cpp import *`, the binding), so every `import llama_cpp` in that process afterwards is the C API
alone; its submodules (the binding, `_logger`) import as usual.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType


def c_api_only() -> ModuleType:
    """The `llama_cpp` package with the binding's names only. Call it before anything imports `llama_cpp`; once the
    whole package is loaded it is returned as it is."""
    if "llama_cpp" in sys.modules:
        return sys.modules["llama_cpp"]
    spec = importlib.util.find_spec("llama_cpp")  # finds the package without running its __init__
    if spec is None:
        raise ImportError("llama-cpp-python is not installed")
    package = importlib.util.module_from_spec(spec)  # a package module (its __path__ set), not executed
    sys.modules["llama_cpp"] = package
    try:
        binding = importlib.import_module("llama_cpp.llama_cpp")
    except BaseException:
        del sys.modules["llama_cpp"]
        raise
    # What `from .llama_cpp import *` binds: the module has no __all__, so every public name.
    package.__dict__.update({name: value for name, value in vars(binding).items() if not name.startswith("_")})
    return package
