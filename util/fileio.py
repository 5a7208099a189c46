"""The one atomic file writer: a temporary file in the target's folder, renamed over the target when
complete, so a crash or a kill never leaves a half-written result (a reader sees the old file or the
new one) and a failed write leaves no temporary file."""
import contextlib
import json
import os
import tempfile
from typing import Iterable, Iterator, List, Union

TEMP_PREFIX = ".tmp_"
PathLike = Union[str, os.PathLike]


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[str]:
    """A temporary path for writing `path` (a library that wants a file name: torch.save, OpenCV's
    VideoWriter, savefig). When the block ends, the file is flushed to disk, given the permissions a
    plain `open(path, 'w')` would, and renamed over `path`; when the block raises, it is removed.

    The temporary name is `TEMP_PREFIX` + the target's name + the writer's pid + a random part, and
    keeps the target's extension (OpenCV picks the container by it). Before writing, the temporary
    files of the same target whose writer is no longer running (a killed run) are removed, so every
    writer cleans up after a kill on its next run."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    name = os.path.basename(path)
    remove_orphaned_temp_files(folder, name)
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{name}.{os.getpid()}.",
                               suffix=f".part{os.path.splitext(name)[1]}", dir=folder)
    os.close(fd)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_atomic(path: PathLike, content: Union[str, bytes, Iterable[str]]) -> None:
    """Write text (a string or an iterable of lines) or bytes to `path` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb" if isinstance(content, bytes) else "w") as f:
            if isinstance(content, (str, bytes)):
                f.write(content)
            else:
                f.writelines(content)


def write_json_atomic(path: PathLike, obj, indent: Union[int, None] = 2, **dumps_kwargs) -> None:
    write_atomic(path, json.dumps(obj, indent=indent, **dumps_kwargs) + ("\n" if indent is not None else ""))


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # running, as another user
        return True
    return True


def remove_orphaned_temp_files(folder: str, name: str) -> List[str]:
    """Remove the temporary files of writes of `folder/name` whose writer process is gone; returns them.
    A temporary file of a writer that still runs (another process) is kept."""
    removed = []
    for tmp in stale_temp_files(folder, name):
        pid = os.path.basename(tmp)[len(TEMP_PREFIX) + len(name) + 1:].split(".", 1)[0]
        if pid.isdigit() and (int(pid) == os.getpid() or _pid_running(int(pid))):
            continue
        with contextlib.suppress(OSError):
            os.unlink(tmp)
            removed.append(tmp)
    return removed


def stale_temp_files(folder: str, name: str) -> List[str]:
    """Temporary files a killed write of `folder/name` left behind."""
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


class NotUTF8Error(ValueError):
    """A text file with bytes that are not UTF-8; the message is `FILE:LINE: not UTF-8 text (...)`."""

    def __init__(self, path: str, line: int, detail: str):
        self.path, self.line, self.what = path, line, f"not UTF-8 text ({detail})"
        super().__init__(f"{path}:{line}: {self.what}")


def read_text(path: PathLike) -> str:
    """A UTF-8 text file's content (a BOM is dropped); NotUTF8Error names the file and line of the first
    byte that is not UTF-8."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise NotUTF8Error(path, line, f"byte 0x{data[exc.start]:02x} at column {column}") from None
