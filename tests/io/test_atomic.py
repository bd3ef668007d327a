from pathlib import Path

import pytest

from jaxpick.io.atomic import TEMP_PREFIX, atomic_path, write_text_atomic


def test_atomic_success_creates_parents_and_keeps_suffix(tmp_path: Path) -> None:
    final = tmp_path / "new" / "dir" / "out.mrc"
    with atomic_path(final) as tmp:
        assert tmp.parent == final.parent
        assert tmp.suffix == ".mrc"
        assert tmp.name.startswith(TEMP_PREFIX)
        tmp.write_bytes(b"data")
        assert not final.exists()
    assert final.read_bytes() == b"data"
    assert list(final.parent.iterdir()) == [final]


def test_atomic_failure_leaves_previous_file_and_no_temp(tmp_path: Path) -> None:
    final = tmp_path / "out.txt"
    write_text_atomic(final, "old")

    def write_then_fail() -> None:
        with atomic_path(final) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_then_fail()
    assert final.read_text() == "old"
    assert list(tmp_path.iterdir()) == [final]


def test_atomic_output_is_world_readable_like_a_normal_file(tmp_path: Path) -> None:
    write_text_atomic(tmp_path / "a.txt", "x")
    (tmp_path / "b.txt").write_text("x")
    assert (tmp_path / "a.txt").stat().st_mode == (tmp_path / "b.txt").stat().st_mode
