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

    The temporary name starts with `TEMP_PREFIX` + the target's name, so a later run can find one a
    killed run left (`stale_temp_files`), and keeps the target's extension (OpenCV picks the
    container by it)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    name = os.path.basename(path)
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{name}.", suffix=f".part{os.path.splitext(name)[1]}",
                               dir=folder)
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


def stale_temp_files(folder: str, name: str) -> List[str]:
    """Temporary files a killed write of `folder/name` left behind."""
    prefix = f"{TEMP_PREFIX}{name}."
    if not os.path.isdir(folder):
        return []
    return [os.path.join(folder, f) for f in os.listdir(folder) if f.startswith(prefix)]
