"""The one atomic-write helper: a reader sees the old file or the whole new one, a failed write
leaves the old file and no temporary file, and the mode is set before the file appears."""

from __future__ import annotations

import os
import pickle

import pytest

from llm_studio.atomic import write_atomic, write_json_atomic, write_text_atomic


def test_a_writer_that_fails_half_way_leaves_the_old_file_and_no_leftover(tmp_path):
    target = tmp_path / "predictions.csv"
    write_text_atomic(target, "old,complete\n")

    def half_then_fail(tmp):
        tmp.write_text("new,half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, half_then_fail)
    assert target.read_text() == "old,complete\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions.csv"]


def test_text_bytes_json_and_a_writer_land_whole_and_readable_by_others(tmp_path):
    old_umask = os.umask(0o077)  # a strict umask must not make shared files private
    try:
        write_text_atomic(tmp_path / "a" / "cfg.yaml", "x: 1\n")
        write_atomic(tmp_path / "w.bin", lambda tmp: tmp.write_bytes(b"\x00\x01"))
        write_json_atomic(tmp_path / "s.json", {"name": "Zürich"})
        write_atomic(tmp_path / "c.pkl", lambda tmp: tmp.write_bytes(pickle.dumps([1, 2])))
    finally:
        os.umask(old_umask)
    assert (tmp_path / "a" / "cfg.yaml").read_text() == "x: 1\n"
    assert (tmp_path / "w.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "s.json").read_text(encoding="utf-8") == '{\n "name": "Zürich"\n}'
    assert pickle.loads((tmp_path / "c.pkl").read_bytes()) == [1, 2]
    for name in ("a/cfg.yaml", "w.bin", "s.json", "c.pkl"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name


def test_a_secret_file_is_readable_by_its_owner_only_when_it_replaces_a_shared_one(tmp_path):
    target = tmp_path / "secrets.env"
    write_text_atomic(target, "")
    assert target.stat().st_mode & 0o777 == 0o644
    write_text_atomic(target, "HF_TOKEN=hf_x\n", mode=0o600)
    assert target.stat().st_mode & 0o777 == 0o600
    assert target.read_text() == "HF_TOKEN=hf_x\n"
