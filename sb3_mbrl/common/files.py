"""
Atomic outputs: everything is written to a staging folder next to the output folder and moved
into place only when the whole command succeeded, so an interrupted run never leaves half a
result where a finished one is expected.
"""
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Union

PathLike = Union[str, "os.PathLike[str]"]


@contextmanager
def staging_dir(output_dir: PathLike) -> Iterator[Path]:
    """
    A temporary folder on the same file system as ``output_dir``; removed on exit. Write results
    there, then ``publish`` them into ``output_dir`` as the last step.
    """
    output_dir = Path(output_dir)
    parent = output_dir.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.tmp-", dir=parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def replace_path(src: PathLike, dst: PathLike) -> None:
    """Move ``src`` (a file or folder) to ``dst``, replacing what is there."""
    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_dir() and not dst.is_symlink():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)


def publish(staged: Path, output_dir: PathLike) -> List[Path]:
    """Move every entry of the staging folder into ``output_dir`` (created if needed)."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    moved = []
    for entry in sorted(staged.iterdir()):
        replace_path(entry, output_dir / entry.name)
        moved.append(output_dir / entry.name)
    return moved


def write_json_atomic(path: PathLike, data: Dict[str, Any]) -> None:
    """Write ``data`` as JSON to ``path`` through a temporary file in the same folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as file:
            json.dump(data, file, indent=2, sort_keys=True)
            file.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_json(path: PathLike) -> Optional[Dict[str, Any]]:
    """The JSON object in ``path``, or None when there is no such file."""
    path = Path(path)
    if not path.is_file():
        return None
    with open(path) as file:
        return json.load(file)
