"""Edge: talks to the local disk. The one atomic writer, the one fsync'ing appender, schema-checked readers
and the per-script file lock.

Every whole-file write goes through `write_bytes_atomic` (temp file in the same directory, fsync, rename,
fsync of the directory), so a crash at any point leaves either the old file or the new one, never a torn
one. Appends (JSONL, CSV) are one `write()` of complete lines followed by fsync, after a torn tail left by an
interrupted append is mended or cut (`append_line`); `read_jsonl` and `read_text` are the readers, with the
torn-line rule of lib.core.line_files.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from loguru import logger

from lib.core.errors import DataError, StateError
from lib.core.line_files import is_complete_record, reject_non_finite, split_lines


def fsync_dir(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_bytes_atomic(path: Path, payload: bytes) -> None:
    """Replace ``path`` with ``payload`` atomically (creating parent directories)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp_path = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temp_path, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_path, path)
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def to_json_bytes(document: Any) -> bytes:
    """Canonical JSON (sorted keys, no NaN/inf allowed) with a trailing newline."""
    try:
        text = json.dumps(document, indent=2, sort_keys=True, allow_nan=False)
    except ValueError as error:
        raise StateError(f"refusing to write JSON with NaN/inf: {error}") from None
    return (text + "\n").encode("utf-8")


def write_json_atomic(path: Path, document: Any) -> None:
    write_bytes_atomic(path, to_json_bytes(document))


def read_json(path: Path) -> Any:
    """Parse a JSON file.

    Raises:
        StateError: the file is missing, unreadable or not valid JSON (it is never replaced silently).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StateError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise StateError(f"cannot read {path}: {error}") from None
    try:
        return json.loads(text, parse_constant=reject_non_finite)
    except (ValueError, TypeError) as error:
        raise StateError(f"{path} is not valid JSON: {error}") from None


def read_text(path: Path) -> str:
    """A text file's content ("" when it does not exist), e.g. equity.csv for lib.ops.equity_csv.parse_equity_csv.

    Raises:
        StateError: the file exists but cannot be read or is not UTF-8.
    """
    try:
        return path.read_text(encoding="utf-8") if path.exists() else ""
    except (OSError, UnicodeDecodeError) as error:
        raise StateError(f"cannot read {path}: {error}") from None


def frame_to_parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    table = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


def write_parquet_atomic(path: Path, frame: pd.DataFrame) -> None:
    write_bytes_atomic(path, frame_to_parquet_bytes(frame))


def read_parquet(path: Path, *, columns: Sequence[str], dtypes: Mapping[str, str] | None = None) -> pd.DataFrame | None:
    """Read a Parquet file whose columns must be exactly ``columns``; None when the file does not exist.

    Raises:
        DataError: unreadable file or a schema that does not match.
    """
    if not path.exists():
        return None
    try:
        frame = pq.read_table(path, use_threads=False).to_pandas(use_threads=False)
    except (OSError, pa.ArrowException) as error:
        raise DataError(f"cannot read {path}: {error}") from None
    if tuple(frame.columns) != tuple(columns):
        raise DataError(f"{path} has columns {list(frame.columns)}, expected {list(columns)}")
    for column, dtype in (dtypes or {}).items():
        if str(frame[column].dtype) != dtype:
            raise DataError(f"{path}: column {column} has dtype {frame[column].dtype}, expected {dtype}")
    return frame


def append_line(path: Path, line: str) -> None:
    """Append one complete line and fsync (journal, run records, CSV rows).

    Never leaves a partial line behind: a failed or short write (e.g. a full disk) is cut back off, and a
    torn tail left by an earlier crash is removed before appending, so a later line can never be glued
    onto a fragment.
    """
    if "\n" in line:
        raise ValueError("append_line takes exactly one line")
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = (line + "\n").encode("utf-8")
    descriptor = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = _drop_torn_tail(descriptor, path)
        try:
            written = os.write(descriptor, payload)
            if written != len(payload):
                raise OSError(errno.EIO, f"short write to {path} ({written} of {len(payload)} bytes)")
            os.fsync(descriptor)
        except BaseException:
            with contextlib.suppress(OSError):
                os.ftruncate(descriptor, size)
            raise
    finally:
        os.close(descriptor)


def _drop_torn_tail(descriptor: int, path: Path) -> int:
    """Mend a final line that has no newline (an interrupted append) and return the file's size.

    A tail that is a complete JSON object only lost its newline: it is kept and terminated. Anything else
    is a fragment and is cut off, so the next line is never glued onto it.
    """
    size = os.lseek(descriptor, 0, os.SEEK_END)
    if size == 0 or os.pread(descriptor, 1, size - 1) == b"\n":
        return size
    keep, position = 0, size
    while position > 0:
        start = max(0, position - 4096)
        newline = os.pread(descriptor, position - start, start).rfind(b"\n")
        if newline >= 0:
            keep = start + newline + 1
            break
        position = start
    tail = os.pread(descriptor, size - keep, keep)
    if is_complete_record(tail):
        os.write(descriptor, b"\n")
        return size + 1
    logger.warning("{}: dropping a torn final line ({} bytes) left by an interrupted write", path, size - keep)
    os.ftruncate(descriptor, keep)
    return keep


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    try:
        line = json.dumps(record, sort_keys=True, allow_nan=False, separators=(",", ":"))
    except ValueError as error:
        raise StateError(f"refusing to journal NaN/inf: {error}") from None
    append_line(path, line)


def read_jsonl(path: Path) -> tuple[list[dict[str, Any]], bool]:
    """Records of a JSONL file and whether its final line was torn (an interrupted append).

    A torn *final* line is the only thing tolerated (and reported through the flag; it is a record only
    when it is a whole JSON object, see lib.core.line_files); anything else that does not parse is a
    StateError.
    """
    if not path.exists():
        return [], False
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise StateError(f"cannot read {path}: {error}") from None
    lines, tail = split_lines(raw)
    records: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line, parse_constant=reject_non_finite)
        except (ValueError, UnicodeDecodeError) as error:
            raise StateError(f"{path}:{number} is not valid JSON: {error}") from None
        if not isinstance(record, dict):
            raise StateError(f"{path}:{number} is not a JSON object")
        records.append(record)
    if tail and is_complete_record(tail):
        records.append(json.loads(tail))
    return records, tail != b""


def is_finite_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class LockHeld(Exception):
    """Another process holds the lock."""


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold a non-blocking flock on ``path`` for the duration (cron overlap guard).

    The kernel releases it when the process dies, so a SIGKILLed run never leaves a stale lock.
    Raises:
        LockHeld: another process holds it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockHeld(str(path)) from None
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(descriptor)
