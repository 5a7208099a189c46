"""Atomic file writes: a temporary file in the target's folder, renamed when complete, so a crash
or a kill never leaves a half-written result (a reader sees the old file or the new one)."""
import contextlib
import json
import os
import tempfile
from typing import Iterable, Union

TEMP_PREFIX = ".tmp_"


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_atomic(path: Union[str, os.PathLike], content: Union[str, bytes, Iterable[str]]) -> None:
    """Write text (a string or an iterable of lines) or bytes to `path` atomically, with the
    permissions a plain `open(path, 'w')` would give."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    # The temporary name starts with the target's name, so a later run can find one a killed run left.
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{os.path.basename(path)}.", suffix=".part", dir=folder)
    try:
        with os.fdopen(fd, "wb" if isinstance(content, bytes) else "w") as f:
            if isinstance(content, (str, bytes)):
                f.write(content)
            else:
                f.writelines(content)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json_atomic(path: Union[str, os.PathLike], obj, indent: Union[int, None] = 2, **dumps_kwargs) -> None:
    write_atomic(path, json.dumps(obj, indent=indent, **dumps_kwargs) + ("\n" if indent is not None else ""))


def stale_temp_files(folder: str, name: str):
    """Temporary files a killed `write_atomic(folder/name, ...)` left behind."""
    prefix = f"{TEMP_PREFIX}{name}."
    if not os.path.isdir(folder):
        return []
    return [os.path.join(folder, f) for f in os.listdir(folder) if f.startswith(prefix)]


class NotWritableError(OSError):
    """An output folder that cannot be created or written; the message names it."""


def check_writable_folder(folder: Union[str, os.PathLike]) -> None:
    """Raise NotWritableError unless `folder` can hold results: an existing folder gets a probe file
    written and removed; a missing one needs its nearest existing parent to be a writable folder
    (nothing is created, so a run that stops early leaves no empty folder behind)."""
    folder = os.path.abspath(os.fspath(folder))
    target = folder
    while not os.path.exists(target):
        target = os.path.dirname(target)
    if not os.path.isdir(target):
        raise NotWritableError(f"output folder {folder} cannot be created: {target} is a file")
    if target != folder:
        if not os.access(target, os.W_OK | os.X_OK):
            raise NotWritableError(f"output folder {folder} cannot be created: {target} is not writable")
        return
    try:
        fd, probe = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}probe.", dir=folder)
        try:
            os.write(fd, b"probe")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        raise NotWritableError(f"output folder {folder} is not writable: {exc.strerror or exc}") from None
