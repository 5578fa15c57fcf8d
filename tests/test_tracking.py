"""dgc/runtime/tracking.py with the real wandb, offline: a run folder keeps its wandb run id across resumes."""

from dgc.runtime.tracking import RUN_ID_FILE, Tracker


def test_a_resumed_tracker_continues_the_folder_s_wandb_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    folder = tmp_path / "digits-resnet18" / "seed0"

    def start(resume: bool) -> str:
        tracker = Tracker("offline", "dgc-test", "digits-resnet18-seed0", folder, {"epochs": 2}, resume=resume)
        assert tracker.run is not None
        tracker.log({"epoch/test_top1": 50.0}, step=1)
        run_id = tracker.run.id
        tracker.finish()
        return run_id

    first = start(resume=False)
    assert (folder / RUN_ID_FILE).read_text().strip() == first
    assert start(resume=True) == first  # the resumed training run continues its wandb run
    fresh = start(resume=False)  # a run trained from scratch is a new wandb run
    assert fresh != first and (folder / RUN_ID_FILE).read_text().strip() == fresh
    runs = sorted(p.name for p in (folder / "wandb").glob("offline-run-*"))
    assert len(runs) == 3 and sum(first in name for name in runs) == 2  # `wandb sync` joins those two


def test_a_disabled_tracker_writes_no_id(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    tracker = Tracker("offline", "dgc-test", "run", tmp_path, {}, resume=True)
    assert tracker.run is None and not (tmp_path / RUN_ID_FILE).exists()
    tracker.log({"x": 1.0})
    tracker.finish()
