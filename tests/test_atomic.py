"""Atomic output: the target is replaced whole, or not at all."""

import os

import pytest

from linsam._src.atomic import atomic_path, write_text_atomic


def test_write_replaces_whole_file_with_usual_mode(tmp_path):
    target = tmp_path / "sub" / "report.md"
    write_text_atomic(target, "first\n")
    write_text_atomic(target, "second\n")
    assert target.read_text() == "second\n"
    umask = os.umask(0)
    os.umask(umask)
    assert (target.stat().st_mode & 0o777) == (0o666 & ~umask)
    assert [p.name for p in target.parent.iterdir()] == ["report.md"]  # no temp files left


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "result.json"
    write_text_atomic(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            with open(tmp, "w") as fh:
                fh.write("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)  # exited and reaped: no such process now


def test_staged_dir_moves_files_in_only_on_commit_report_last(tmp_path):
    from linsam._src.atomic import StagedDir

    (tmp_path / "report.md").write_text("old report")
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "f1.png").write_text("old f1")
    (tmp_path / "figures" / "f9.png").write_text("not rewritten")
    stage = StagedDir(tmp_path, last=("report.md",))
    (stage.path / "figures").mkdir()
    (stage.path / "figures" / "f1.png").write_text("new f1")
    (stage.path / "report.md").write_text("new report")
    assert (tmp_path / "report.md").read_text() == "old report"  # untouched until commit
    assert (tmp_path / "figures" / "f1.png").read_text() == "old f1"
    assert stage.final(stage.path / "figures" / "f1.png") == tmp_path / "figures" / "f1.png"
    moved = stage.commit()
    assert moved[-1] == tmp_path / "report.md"  # the report moves in last
    assert (tmp_path / "report.md").read_text() == "new report"
    assert (tmp_path / "figures" / "f1.png").read_text() == "new f1"
    assert (tmp_path / "figures" / "f9.png").read_text() == "not rewritten"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figures", "report.md"]


def test_staged_dir_discard_and_stale_staging(tmp_path):
    from linsam._src.atomic import StagedDir, discard_pending

    target = tmp_path / "new" / "out"
    with pytest.raises(RuntimeError):
        with StagedDir(target, last=("report.md",)) as stage:
            (stage.path / "report.md").write_text("half")
            raise RuntimeError("the run failed")
    assert not (tmp_path / "new").exists()  # created for the run, removed with it
    old = tmp_path / "keep"
    old.mkdir()
    (old / "report.md").write_text("old")
    stale = old / f".linsam-staging-{_dead_pid()}-abc"  # left by a process killed with SIGKILL
    stale.mkdir()
    (stale / "report.md").write_text("from the killed run")
    stage = StagedDir(old)
    assert not stale.exists()
    (stage.path / "x.txt").write_text("x")
    assert str(stage.path) in discard_pending()  # what a signal handler removes
    assert sorted(p.name for p in old.iterdir()) == ["report.md"]


def test_check_writable_dir_and_file_leave_nothing_behind(tmp_path):
    from linsam._src.atomic import check_writable_dir, check_writable_file

    check_writable_dir(tmp_path / "a" / "b")
    check_writable_file(tmp_path / "c" / "report.md")
    assert list(tmp_path.iterdir()) == []
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        check_writable_dir(f)
    with pytest.raises(ValueError, match="not a directory"):
        check_writable_dir(f / "sub")
    with pytest.raises(ValueError, match="is a directory"):
        check_writable_file(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["file"]
