import json

import pytest

from r1lab.io import append_jsonl, atomic_dir, atomic_write_json, read_jsonl


def test_atomic_write_json_roundtrip(tmp_path):
    p = atomic_write_json(tmp_path / "a" / "b.json", {"x": 1})
    assert json.loads(p.read_text()) == {"x": 1}
    assert [f.name for f in p.parent.iterdir()] == ["b.json"]


def test_read_jsonl_skips_torn_tail_only(tmp_path):
    p = tmp_path / "m.jsonl"
    append_jsonl(p, {"step": 1})
    append_jsonl(p, {"step": 2})
    with open(p, "a") as f:
        f.write('{"step": 3, "lo')  # a kill mid-write
    assert [r["step"] for r in read_jsonl(p)] == [1, 2]
    p.write_text('{"bad\n{"step": 2}\n')
    with pytest.raises(json.JSONDecodeError):
        list(read_jsonl(p))


def test_atomic_dir_is_all_or_nothing(tmp_path):
    final = tmp_path / "model"
    with pytest.raises(RuntimeError):
        with atomic_dir(final) as d:
            (d / "half.bin").write_text("x")
            raise RuntimeError("killed")
    assert not final.exists() and list(tmp_path.iterdir()) == []
    with atomic_dir(final) as d:
        (d / "w.bin").write_text("ok")
    assert (final / "w.bin").read_text() == "ok"
