"""The benchmark's peer: `llama-server`, built once from the llama.cpp that the installed llama-cpp-python vendors.

    python bench/peer.py            # build (or find) it and print its path

The sdist of the exact installed version is fetched with pip into a cache directory, its vendored llama.cpp is
built with cmake (CPU only, the `llama-server` target), and the binary is kept there. Not part of `make test`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from importlib import metadata
from pathlib import Path

CACHE = Path(os.environ.get("TARX_BENCH_CACHE") or Path.home() / ".cache" / "tarx-bench")


def llama_server(cache: Path = CACHE) -> Path:
    """The path of a built `llama-server` for the installed llama-cpp-python, building it on first use."""
    version = metadata.version("llama-cpp-python")
    root = cache / f"llama-cpp-python-{version}"
    binary = root / "build" / "bin" / "llama-server"
    if binary.is_file():
        return binary
    cache.mkdir(parents=True, exist_ok=True)
    sdist = cache / f"llama_cpp_python-{version}.tar.gz"
    if not sdist.is_file():
        subprocess.run([sys.executable, "-m", "pip", "download", f"llama-cpp-python=={version}", "--no-binary",
                        ":all:", "--no-deps", "-d", str(cache)], check=True)
    source = cache / f"llama_cpp_python-{version}" / "vendor" / "llama.cpp"
    if not source.is_dir():
        with tarfile.open(sdist) as tar:
            tar.extractall(cache, filter="data")
    build = root / "build"
    build.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cmake", "-S", str(source), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                    "-DLLAMA_CURL=OFF", "-DGGML_NATIVE=ON", "-DLLAMA_BUILD_TESTS=OFF",
                    "-DLLAMA_BUILD_EXAMPLES=OFF", "-DBUILD_SHARED_LIBS=OFF"], check=True)
    subprocess.run(["cmake", "--build", str(build), "--target", "llama-server", "-j", str(os.cpu_count() or 1)],
                   check=True)
    return binary


if __name__ == "__main__":
    print(llama_server())
