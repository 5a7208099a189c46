"""util/fileio.py: the one atomic writer. A write either replaces the whole file or, when it fails
midway, leaves the old file as it was and no temporary file behind."""
import os
import stat

import pytest
from hypothesis import given, settings, strategies as st

from util.fileio import atomic_path, stale_temp_files, write_atomic, write_json_atomic


class Boom(RuntimeError):
    pass


def lines_then_fail(lines, fail_at):
    for i, line in enumerate(lines):
        if i == fail_at:
            raise Boom("disk gone")
        yield line


def test_a_failure_midway_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "seq.txt"
    write_atomic(target, "old\n")
    with pytest.raises(Boom):
        write_atomic(target, lines_then_fail(["1\n", "2\n", "3\n"], fail_at=2))
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["seq.txt"]
    assert stale_temp_files(str(tmp_path), "seq.txt") == []


def test_atomic_path_renames_on_success_only(tmp_path):
    target = tmp_path / "sub" / "video.mp4"
    with atomic_path(target) as tmp:
        assert os.path.dirname(tmp) == str(target.parent) and tmp.endswith(".mp4")  # same folder, ending
        assert stale_temp_files(str(target.parent), "video.mp4") == [tmp]  # findable if killed now
        with open(tmp, "wb") as f:
            f.write(b"new")
        assert not target.exists()  # not before the block ends
    assert target.read_bytes() == b"new"
    with pytest.raises(Boom):
        with atomic_path(target) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"half")
            raise Boom("killed")
    assert target.read_bytes() == b"new" and os.listdir(target.parent) == ["video.mp4"]


def test_permissions_are_those_of_a_plain_open(tmp_path):
    old = os.umask(0o022)
    try:
        write_atomic(tmp_path / "a.txt", "x")
        with open(tmp_path / "b.txt", "w") as f:
            f.write("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == stat.S_IMODE((tmp_path / "b.txt").stat().st_mode)


def test_json(tmp_path):
    write_json_atomic(tmp_path / "r.json", {"a": [1, 2]}, indent=None)
    assert (tmp_path / "r.json").read_text() == '{"a": [1, 2]}'


@settings(max_examples=50, deadline=None)
@given(old=st.text(), new=st.one_of(st.text(), st.binary(), st.lists(st.text(min_size=1))),
       fail_at=st.one_of(st.none(), st.integers(0, 5)))
def test_the_file_holds_the_old_or_the_new_content_never_a_mix(tmp_path_factory, old, new, fail_at):
    folder = tmp_path_factory.mktemp("w")
    target = folder / "out.txt"
    write_atomic(target, old.encode())
    fails = fail_at is not None and isinstance(new, list) and fail_at < len(new)
    if fails:
        with pytest.raises(Boom):
            write_atomic(target, lines_then_fail(new, fail_at))
    else:
        write_atomic(target, new)
    expected = old.encode() if fails else (new if isinstance(new, bytes) else
                                           ("".join(new) if isinstance(new, list) else new).encode())
    assert target.read_bytes() == expected
    assert os.listdir(folder) == ["out.txt"]
