from __future__ import annotations

import multiprocessing
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from lib.core.errors import DataError, StateError
from lib.core.storage import (
    LockHeld,
    append_jsonl,
    append_line,
    exclusive_lock,
    read_json,
    read_jsonl,
    read_parquet,
    write_bytes_atomic,
    write_json_atomic,
    write_parquet_atomic,
)


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "x.json"
    write_json_atomic(target, {"a": 1})
    write_json_atomic(target, {"a": 2})
    assert read_json(target) == {"a": 2}
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.json"]


def test_failed_write_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    write_json_atomic(target, {"a": 1})
    with pytest.raises(StateError):
        write_json_atomic(target, {"a": float("nan")})
    assert read_json(target) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_write_error_removes_temp_and_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "f"
    write_bytes_atomic(target, b"old")
    with pytest.raises(TypeError):
        write_bytes_atomic(target, "not bytes")  # type: ignore[arg-type]  # fails after the temp file exists
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


@pytest.mark.parametrize("content", ["", "{", "[1,", '{"a": NaN}', "\xff"])
def test_read_json_rejects_bad_files(tmp_path: Path, content: str) -> None:
    target = tmp_path / "bad.json"
    target.write_text(content, encoding="latin-1")
    with pytest.raises(StateError):
        read_json(target)


def test_read_json_missing_is_state_error(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="does not exist"):
        read_json(tmp_path / "nope.json")


def test_parquet_round_trip_and_schema_check(tmp_path: Path) -> None:
    frame = pd.DataFrame({"timestamp": pd.Series([1, 2], dtype="int64"), "rate": [0.1, 0.2]})
    path = tmp_path / "f.parquet"
    write_parquet_atomic(path, frame)
    pd.testing.assert_frame_equal(read_parquet(path, columns=("timestamp", "rate")), frame)
    assert read_parquet(tmp_path / "missing.parquet", columns=("timestamp",)) is None
    with pytest.raises(DataError, match="columns"):
        read_parquet(path, columns=("timestamp", "value"))
    with pytest.raises(DataError, match="dtype"):
        read_parquet(path, columns=("timestamp", "rate"), dtypes={"timestamp": "float64"})
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError):
        read_parquet(tmp_path / "junk.parquet", columns=("timestamp",))


def test_jsonl_append_and_torn_last_line(tmp_path: Path) -> None:
    journal = tmp_path / "orders.jsonl"
    append_jsonl(journal, {"event": "planned", "n": 1})
    append_jsonl(journal, {"event": "sent", "n": 2})
    records, torn = read_jsonl(journal)
    assert [r["n"] for r in records] == [1, 2] and not torn
    with open(journal, "ab") as handle:
        handle.write(b'{"event": "fil')
    records, torn = read_jsonl(journal)
    assert [r["n"] for r in records] == [1, 2] and torn


def test_jsonl_corruption_in_the_middle_is_an_error(tmp_path: Path) -> None:
    journal = tmp_path / "orders.jsonl"
    journal.write_text('{"n": 1}\nGARBAGE\n{"n": 3}\n')
    with pytest.raises(StateError, match=":2"):
        read_jsonl(journal)


def test_append_line_rejects_multiline(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        append_line(tmp_path / "x", "a\nb")
    with pytest.raises(StateError):
        append_jsonl(tmp_path / "x", {"v": float("inf")})
    assert not (tmp_path / "x").exists() or (tmp_path / "x").read_text() == ""


def _try_lock(path: str, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    try:
        with exclusive_lock(Path(path)):
            queue.put("acquired")
    except LockHeld:
        queue.put("held")


def test_lock_is_exclusive_across_processes(tmp_path: Path) -> None:
    lock_path = tmp_path / "locks" / "x.lock"
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    with exclusive_lock(lock_path):
        child = context.Process(target=_try_lock, args=(str(lock_path), queue))
        child.start()
        child.join(30)
        assert queue.get(timeout=5) == "held"
    child = context.Process(target=_try_lock, args=(str(lock_path), queue))
    child.start()
    child.join(30)
    assert queue.get(timeout=5) == "acquired"


def test_append_drops_a_torn_tail_first(tmp_path: Path) -> None:
    journal = tmp_path / "orders.jsonl"
    append_jsonl(journal, {"n": 1})
    with open(journal, "ab") as handle:
        handle.write(b'{"n": 2, "torn')
    append_jsonl(journal, {"n": 3})
    records, torn = read_jsonl(journal)
    assert [r["n"] for r in records] == [1, 3] and not torn


def test_a_failed_append_leaves_no_fragment(tmp_path: Path) -> None:
    journal = tmp_path / "runs.jsonl"
    append_jsonl(journal, {"n": 1})
    before = journal.read_bytes()
    script = (
        "import resource, sys\n"
        "from pathlib import Path\n"
        "from lib.core.storage import append_jsonl\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({len(before) + 5}, {len(before) + 5}))\n"
        "try:\n"
        f"    append_jsonl(Path({str(journal)!r}), {{'n': 2, 'padding': 'x' * 100}})\n"
        "except OSError as error:\n"
        "    print('failed', error.errno)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False,
                            cwd=Path(__file__).resolve().parents[3])
    assert result.stdout.startswith("failed"), result.stderr
    assert journal.read_bytes() == before  # a full disk cut the write short: the fragment was removed


def test_append_keeps_a_complete_record_that_only_lost_its_newline(tmp_path: Path) -> None:
    journal = tmp_path / "orders.jsonl"
    journal.write_bytes(b'{"n": 1}\n{"n": 2}')
    append_jsonl(journal, {"n": 3})
    records, torn = read_jsonl(journal)
    assert [r["n"] for r in records] == [1, 2, 3] and not torn
