from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from odin_monitor.monitoring import inbox as inbox_mod
from odin_monitor.monitoring.errors import BatchVanishedError, ConfigError
from odin_monitor.monitoring.inbox import (
    LOCK_NAME,
    batch_candidates,
    inbox_lock,
    process_path,
    scan_inbox,
    unreadable_id,
)
from tests.monitoring.helpers import fake_scorer_for


def _images(n: int, level: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(level, 0.05, (n, 3, 4, 4)), 0, 1).astype(np.float32)


def _scan(inbox, model, config, reference, scorer=None):
    scorer = scorer or fake_scorer_for(model)
    items = scan_inbox(
        inbox, model, config, scorer=scorer, reference=reference, input_shape=(3, 4, 4)
    )
    return {item.path.name: item for item in items}


def test_candidates_skip_hidden_partial_and_empty_entries(tmp_path):
    for name in ("a.npz", ".hidden.npz", "b.npz.part", "c.tmp", "notes.txt", LOCK_NAME):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    (tmp_path / "day1").mkdir()
    (tmp_path / "day1" / "0.png").write_bytes(b"x")
    assert [p.name for p in batch_candidates(tmp_path)] == ["a.npz", "day1", "notes.txt"]


def test_scan_processes_each_batch_once_and_reports_strays(config, model, reference, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    np.savez(inbox / "a.npz", images=_images(20, 0.5))
    (inbox / "notes.txt").write_text("not a batch")
    folder = inbox / "day1"
    folder.mkdir()
    for i in range(3):  # uint8 HWC files, resized to the model's (3, 4, 4)
        Image.fromarray(np.full((8, 8, 3), 120 + i, np.uint8)).save(folder / f"{i}.png")
    scorer = fake_scorer_for(model)
    first = _scan(inbox, model, config, reference, scorer)
    assert "not a batch" in first["notes.txt"].skipped
    assert first["a.npz"].result.record.n_images == 20
    assert first["day1"].result.record.n_images == 3 and scorer.calls == 2
    assert _scan(inbox, model, config, reference, scorer) == {
        "notes.txt": first["notes.txt"]
    }  # complete batches are skipped silently, nothing scored twice
    assert scorer.calls == 2 and len(config.log.batch_ids()) == 2


def test_vanished_batch_is_skipped_not_quarantined(config, model, reference, tmp_path, monkeypatch):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    monkeypatch.setattr(inbox_mod, "batch_candidates", lambda d: [d / "gone.npz", d / "gone"])
    items = _scan(inbox, model, config, reference)
    assert set(items) == {"gone.npz", "gone"}
    assert all("left" in item.skipped for item in items.values())
    assert config.log.quarantined() == [] and config.log.batch_ids() == []


def test_unreadable_batch_is_quarantined_once_by_name(
    config, model, reference, tmp_path, monkeypatch
):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    np.savez(inbox / "locked.npz", images=_images(5, 0.5))

    def no_read(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(inbox_mod, "batch_id_of", no_read)
    item = _scan(inbox, model, config, reference)["locked.npz"]
    assert item.result.quarantined and "Permission denied" in item.result.quarantine_reason
    (row,) = config.log.quarantined()
    assert row["batch_id"] == unreadable_id(inbox / "locked.npz")
    assert Path(row["quarantined_path"]).is_file() and not (inbox / "locked.npz").exists()
    np.savez(inbox / "locked.npz", images=_images(5, 0.5))  # could not be moved: left there
    again = _scan(inbox, model, config, reference)["locked.npz"]
    assert again.result is None and "quarantined before" in again.skipped
    assert len(config.log.quarantined()) == 1


def test_one_failing_batch_does_not_stop_the_scan(config, model, reference, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name in ("a.npz", "b.npz"):
        np.savez(inbox / name, images=_images(6, 0.5, seed=len(name) + ord(name[0])))

    def scorer(images):
        if scorer.calls == 0:
            scorer.calls += 1
            raise MemoryError("out of memory")  # not bad input: not quarantined
        return fake_scorer_for(model)(images)

    scorer.calls = 0
    items = _scan(inbox, model, config, reference, scorer)
    assert isinstance(items["a.npz"].error, MemoryError) and (inbox / "a.npz").exists()
    assert items["b.npz"].result.record.n_images == 6


def test_process_path_refuses_unknown_kinds_and_vanished_files(config, model, tmp_path):
    (tmp_path / "batch.txt").write_text("x")
    with pytest.raises(ConfigError, match=r"Expected a folder of images.*'batch\.txt'"):
        process_path(tmp_path / "batch.txt", model, config, scorer=fake_scorer_for(model))
    with pytest.raises(BatchVanishedError, match="left"):
        process_path(tmp_path / "gone.npz", model, config, scorer=fake_scorer_for(model))


def test_lock_is_exclusive_per_inbox(tmp_path):
    with inbox_lock(tmp_path) as mine:
        assert mine
        with inbox_lock(tmp_path) as other:
            assert not other  # flock: exclusive even within one process (new open file)
    with inbox_lock(tmp_path) as again:
        assert again
