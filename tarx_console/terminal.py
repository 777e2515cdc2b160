"""A terminal driver that survives the terminal going away (a dropped SSH session).

Textual's output thread dies on the first write to a hung-up terminal, after which its shutdown waits forever
on a full queue. Here failed writes are dropped instead, so the console can stop the runtime and exit cleanly.
"""

from __future__ import annotations

from typing import IO, Any

from textual.drivers.linux_driver import LinuxDriver


class _DroppingWrites:
    def __init__(self, file: IO[str]) -> None:
        self._file = file

    def write(self, text: str) -> int:
        try:
            return self._file.write(text)
        except OSError:  # EIO: nobody is reading any more
            return len(text)

    def flush(self) -> None:
        try:
            self._file.flush()
        except OSError:
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


class HangupSafeDriver(LinuxDriver):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._file = _DroppingWrites(self._file)  # type: ignore[assignment]
