"""records: torn last lines are dropped and redone, damage before the end is an error naming file and line,
checkpoints fsync, the kill hook really kills mid-line, and the settings lock refuses changed settings by name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from steerwarm import records
from steerwarm.records import (
    DamagedLogError,
    RecordLog,
    SettingsLock,
    SettingsMismatchError,
    append_records,
    commit_file,
    differences,
    read_numbered,
    read_records,
)

ROOT = Path(__file__).resolve().parents[1]


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_a_torn_last_line_is_dropped_cut_off_and_redone(tmp_path: Path) -> None:
    log = _write(tmp_path / "a.jsonl", '{"id": 1}\n{"id": 2}\n{"id": 3, "te')
    assert read_records(log) == [{"id": 1}, {"id": 2}]
    assert log.read_text().endswith('"te')  # reading alone changes nothing
    with RecordLog(log) as w:
        w.append({"id": 3})
    assert log.read_text() == '{"id": 1}\n{"id": 2}\n{"id": 3}\n'


def test_an_invalid_last_line_with_its_newline_is_torn_too(tmp_path: Path) -> None:
    log = _write(tmp_path / "a.jsonl", '{"id": 1}\n{"id"\n\n')
    assert read_records(log, repair=True) == [{"id": 1}]
    assert log.read_text() == '{"id": 1}\n'


def test_a_complete_last_record_without_newline_is_kept(tmp_path: Path) -> None:
    log = _write(tmp_path / "a.jsonl", '{"id": 1}\n{"id": 2}')
    append_records(log, [{"id": 3}])
    assert read_records(log) == [{"id": 1}, {"id": 2}, {"id": 3}]


def test_damage_before_the_end_names_the_file_and_line(tmp_path: Path) -> None:
    log = _write(tmp_path / "bad.jsonl", '{"id": 1}\n\n[1, 2]\n{"id": 4}\n')
    with pytest.raises(DamagedLogError, match=r"bad\.jsonl:3: not a JSON object") as err:
        read_records(log)
    assert err.value.line == 3 and err.value.path == log and isinstance(err.value, ValueError)
    with pytest.raises(DamagedLogError), RecordLog(log) as w:
        w.append({"id": 5})
    assert read_numbered(_write(tmp_path / "ok.jsonl", '\n{"a": 1}\n')) == [(2, {"a": 1})]
    assert read_records(tmp_path / "missing.jsonl") == []


def test_checkpoint_and_close_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(records.os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    log = RecordLog(tmp_path / "a.jsonl")
    log.extend([{"i": 0}, {"i": 1}])
    assert synced == []  # flushed, not synced
    log.checkpoint()
    assert len(synced) == 1
    log.extend([{"i": 2}], sync=True)
    assert len(synced) == 2
    log.close()
    assert len(synced) == 3 and len(read_records(log.path)) == 3


def test_the_kill_hook_dies_half_way_through_the_nth_record(tmp_path: Path) -> None:
    log = tmp_path / "k.jsonl"
    script = ("import sys\nfrom steerwarm.records import RecordLog\n"
              "with RecordLog(sys.argv[1]) as w:\n"
              "    for i in range(10):\n        w.extend([{'i': 2 * i}, {'i': 2 * i + 1}])\n")
    env = {**os.environ, records.KILL_ENV: "5", "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, "-c", script, str(log)], env=env, timeout=60)
    assert proc.returncode == -9
    text = log.read_text()
    assert text.count("\n") == 4 and not text.endswith("\n")  # 4 records, then half of the 5th
    assert [r["i"] for r in read_records(log)] == [0, 1, 2, 3]
    env.pop(records.KILL_ENV)
    script = ("import sys\nfrom steerwarm.records import RecordLog\n"
              "w = RecordLog(sys.argv[1]); done = {r['i'] for r in w.read()}\n"
              "w.extend([{'i': i} for i in range(20) if i not in done]); w.close()\n")
    subprocess.run([sys.executable, "-c", script, str(log)], env=env, timeout=60, check=True)
    assert [r["i"] for r in read_records(log)] == list(range(20))


def test_commit_file_puts_a_complete_file_in_place(tmp_path: Path) -> None:
    tmp = _write(tmp_path / ".x.tmp", "data")
    commit_file(tmp, tmp_path / "x")
    assert (tmp_path / "x").read_text() == "data" and not tmp.exists()


def test_the_lock_refuses_changed_settings_naming_every_key(tmp_path: Path) -> None:
    lock = SettingsLock(tmp_path / "run.json", keys=("seed", "mode", "items"))
    doc = lock.open({"seed": 1, "mode": "a", "items": {"t": "h1"}, "batch_size": 8})
    assert doc == {"config": {"seed": 1, "mode": "a", "items": {"t": "h1"}, "batch_size": 8}}
    assert json.loads((tmp_path / "run.json").read_text()) == doc
    with pytest.raises(SettingsMismatchError) as err:
        lock.open({"seed": 2, "mode": "b", "items": {"t": "h2"}, "batch_size": 8})
    msg = str(err.value)
    assert "field 'seed' was 1 in this run folder, now 2" in msg and "field 'mode' was 'a'" in msg
    assert "field 'items' (at 't') was 'h1'" in msg and "use a new --out folder" in msg and "run.json" in msg
    assert [(d.key, d.at) for d in err.value.differences] == [("seed", ""), ("mode", ""), ("items", "t")]
    # keys that may differ (batch size, progress) are refreshed; result-defining ones keep the stored value
    doc = lock.open({"seed": 1, "mode": "a", "items": {"t": "h1"}, "batch_size": 2, "progress": False})
    assert doc["config"]["batch_size"] == 2 and doc["config"]["progress"] is False
    assert not list(tmp_path.glob(".*tmp*"))  # written through a temporary file, renamed into place


def test_lock_without_keys_compares_everything_and_reads_damage(tmp_path: Path) -> None:
    lock = SettingsLock(tmp_path / "config.json", field=None)
    lock.open({"config": {"lr": 0.1}, "data_hash": "a"})
    with pytest.raises(SettingsMismatchError, match=r"field 'config' \(at 'lr'\) was 0.1 in this run folder, now 0.2"):
        lock.check({"config": {"lr": 0.2}, "data_hash": "a"})
    assert differences({"a": 1}, {"a": 1, "b": 2}) == [records.Difference("b", "<missing>", 2)]
    assert differences({"a": 1}, {"a": 1, "b": 2}, keys=("a", "b")) == []  # a key an older lock lacks is accepted
    _write(tmp_path / "config.json", "{not json")
    with pytest.raises(DamagedLogError, match=r"config\.json:1: invalid JSON"):
        lock.read()
