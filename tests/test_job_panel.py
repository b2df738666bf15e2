"""Jobs a user can tell apart and errors that go away: the job manager's dedupe and dismiss, the
panel's cards under AppTest, ETAs as h:mm:ss."""
import time

from engine.config import preset
from engine.jobs import DONE, FAILED, JobManager
from test_app import new_app, texts
from ui.widgets import fmt_seconds


def test_an_eta_reads_as_seconds_then_h_mm_ss():
    assert [fmt_seconds(s) for s in (None, float("nan"), 4.24, 42.4, 377, 3600, 99_999)] == \
        ["–", "–", "4.2s", "42s", "0:06:17", "1:00:00", "27:46:39"]


def test_an_identical_training_job_under_way_is_followed_not_queued_twice(store):
    manager = JobManager(store=store)
    config = preset("quick", ["ce"], epochs=30)
    first = manager.submit_training(config)
    assert manager.submit_training(config) == first  # queued or running: the same job
    other = manager.submit_training(config.with_(seed=1))
    assert other != first
    assert manager.wait(first, timeout=120).status == DONE
    again = manager.submit_training(config)  # finished: a new job, which reuses the stored run
    assert again not in (first, other)
    assert manager.wait(again, timeout=60).runs[0]["reused"]
    assert manager.wait(other, timeout=120).status == DONE


def test_a_dismissed_failed_job_leaves_the_panel_but_can_still_be_read(store, tmp_path):
    manager = JobManager(store=store, data_dir=tmp_path / "no-data")
    failed = manager.submit_training(preset("quick", ["ce"], dataset="mnist", epochs=1))
    assert manager.wait(failed, timeout=60).status == FAILED
    assert [j.id for j in manager.list()] == [failed]
    manager.dismiss(failed)
    assert manager.list() == [] and [j.id for j in manager.list(dismissed=True)] == [failed]
    assert manager.get(failed).status == FAILED and "mnist" in manager.get(failed).error.lower()


def test_a_failed_job_is_one_line_with_its_details_folded_and_a_dismiss_button():
    from ui.state import get_manager

    new_app()
    manager = get_manager()
    job_id = manager.submit_training(preset("quick", ["ce"], dataset="svhn", epochs=1, seed=int(time.time()) % 1000))
    assert manager.wait(job_id, timeout=60).status == FAILED
    at = new_app()  # a page opened now (AppTest redraws the panel's timed fragment only on a fresh run)
    shown = " ".join(texts(at.sidebar))
    assert "failed" in shown and "details" in [e.label for e in at.sidebar.expander]
    assert f"dismiss-{job_id}" in [b.key for b in at.sidebar.button]
    assert not at.sidebar.error  # no red block filling the sidebar
    manager.dismiss(job_id)  # what the button calls (AppTest does not run a timed fragment's button handler)
    assert f"dismiss-{job_id}" not in [b.key for b in new_app().sidebar.button]


def test_many_warnings_of_one_run_read_as_one_line_with_the_rest_folded():
    from streamlit.testing.v1 import AppTest

    from ui.widgets import warning_groups

    warnings = [f"MMC (ab12cd) · pgd: accuracy rises with ε at {e}" for e in (0.1, 0.2, 0.3)] + \
               ["GCCS (ef34gh): margin PGD beats the adaptive attack", "a warning that names no run"]
    assert [(run, len(found)) for run, found in warning_groups(warnings)] == \
        [("MMC (ab12cd)", 3), ("GCCS (ef34gh)", 1), ("other", 1)]

    def page(warnings):
        from ui.widgets import warning_summary
        warning_summary(warnings)

    at = AppTest.from_function(page, args=(warnings,)).run()
    assert len(at.warning) == 1
    lines = at.warning[0].value.split("  \n")
    assert lines[0] == "**MMC (ab12cd)**: accuracy rises with ε at 0.1 (and 2 more)" and len(lines) == 3
    assert at.expander[0].label == "all 5 warnings"


def test_a_c_and_w_job_shows_an_eta_and_cancels_within_a_second(store):
    from engine.jobs import CANCELLED, RUNNING
    from engine.train import train_job

    (record,) = train_job(preset("quick", ["ce"], epochs=2), store)
    manager = JobManager(store=store)
    job_id = manager.submit_measure([record["run_id"]], "cw", {"params": {"steps": 1000, "search_steps": 9}},
                                    samples=100)
    deadline = time.time() + 60
    while time.time() < deadline and (manager.get(job_id).status != RUNNING or manager.get(job_id).eta is None):
        time.sleep(0.05)
    job = manager.get(job_id)
    assert job.status == RUNNING and job.eta is not None and job.eta > 0, (job.status, job.eta)
    asked = time.time()
    manager.cancel(job_id)
    assert manager.wait(job_id, timeout=10).status == CANCELLED
    assert time.time() - asked < 1.5  # within a second of the next iterations, not of the next batch
