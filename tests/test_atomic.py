"""Atomic outputs survive a crash at any point: the old folder or the new one, never neither."""

import os

import pytest

from visreward.core import atomic


def _write(folder, text):
    with atomic.atomic_dir(folder) as tmp:
        (tmp / "content.txt").write_text(text)


def test_a_crash_between_the_two_renames_is_undone_on_the_next_run(tmp_path, monkeypatch):
    target = tmp_path / "rm"
    _write(target, "version 1")
    real_replace, calls = os.replace, []

    def dies_on_the_second_rename(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", dies_on_the_second_rename)
    with pytest.raises(KeyboardInterrupt):
        _write(target, "version 2")
    monkeypatch.setattr(atomic.os, "replace", real_replace)
    assert not target.exists() and (tmp_path / ".rm.old" / "content.txt").read_text() == "version 1"

    atomic.recover_dir(target)  # what the next run does first
    assert (target / "content.txt").read_text() == "version 1" and not (tmp_path / ".rm.old").exists()
    _write(target, "version 2")
    assert (target / "content.txt").read_text() == "version 2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rm"]


def test_a_leftover_old_folder_beside_the_new_one_is_removed(tmp_path):
    _write(tmp_path / "rm", "new")
    (tmp_path / ".rm.old").mkdir()
    atomic.recover_dir(tmp_path / "rm")
    assert (tmp_path / "rm" / "content.txt").read_text() == "new" and not (tmp_path / ".rm.old").exists()


def test_the_rounds_loop_finds_a_step_whose_replacement_crashed(tmp_path):
    from visreward.post_training.rounds import _done

    (tmp_path / ".rm.old").mkdir()
    (tmp_path / ".rm.old" / "metrics.json").write_text("{}")
    assert _done(tmp_path / "rm", "metrics.json")


def test_atomic_outputs_get_the_umask_s_permissions_not_private_ones(tmp_path):
    import os
    import stat

    from visreward.core.atomic import atomic_dir, write_text

    previous = os.umask(0o022)
    try:
        write_text(tmp_path / "scores.json", "{}")
        with atomic_dir(tmp_path / "model") as folder:
            (folder / "config.json").write_text("{}")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "scores.json").stat().st_mode) == 0o644  # mkstemp alone: 0o600
    assert stat.S_IMODE((tmp_path / "model").stat().st_mode) == 0o755       # mkdtemp alone: 0o700
