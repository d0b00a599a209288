"""One delivering process per store: an flock beside the store file.

Two processes taking due copies from one store would both deliver them (the
store has no lease). Whoever delivers holds `<store>.deliver.lock`; the kernel
releases it when that process ends, however it ends, so a restarted or
stand-by process takes over by asking again.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class DeliveryLock:
    def __init__(self, store_path: str) -> None:
        self.path = Path(f"{store_path}.deliver.lock")
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        """True once this process holds the lock; False while another one does."""
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def holder(self) -> str:
        """The pid written by the process that holds the lock, for a log line."""
        try:
            return self.path.read_text().strip() or "unknown"
        except OSError:
            return "unknown"

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor drops the flock
            self._fd = None


def delivery_running(store_path: str) -> bool | None:
    """Whether some process holds the store's delivery lock, read from the kernel's lock
    table (/proc/locks) without touching the lock: taking it even for a moment could make
    a deliverer starting at that instant give up. None where that table cannot be read."""
    path = Path(f"{store_path}.deliver.lock")
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return False
    except OSError:
        return None
    wanted = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as table:
            return any(
                fields[1] == "FLOCK" and fields[5] == wanted
                for fields in (line.split() for line in table)
                if len(fields) > 5
            )
    except OSError:
        return None
