"""The Studies page under AppTest, inside the app's frame, with real jobs and the process's store."""
from test_app import new_app, run_until

TOML = """name = "page-tiny"
title = "CE against GCCS, two epochs"
objectives = ["ce", "gccs"]
seeds = [0, 1]
evaluate = []

[settings]
epochs = 2

[[claims]]
text = "GCCS beats CE"
metric = "clean_accuracy"
a = {objective = "gccs"}
b = {objective = "ce"}
expect = "higher"
"""


def studies_page():
    at = new_app()
    at.switch_page("pages/studies.py")
    at.run()
    assert not at.exception, at.exception
    return at


def page_text(at) -> str:
    return " ".join(str(getattr(e, "value", "")) for e in list(at.markdown) + list(at.caption) + list(at.success)
                    + list(at.error) + list(at.warning))


def test_a_built_in_reproduction_is_described_and_sized_before_it_runs():
    at = studies_page()
    assert at.selectbox(key="studies-name").value == "gccs-table1"
    assert "18 runs: 3 seeds of each cell." in page_text(at)
    at.text_input(key="studies-seeds-gccs-table1").set_value("0,1").run()
    assert "12 runs: 2 seeds of each cell." in page_text(at)
    at.selectbox(key="studies-name").set_value("gccs-fig2").run()  # another study: its own seeds
    assert "21 runs: 3 seeds of each cell." in page_text(at)


def test_bad_input_is_a_message_naming_the_field_and_nothing_starts():
    at = studies_page()
    at.text_input(key="studies-seeds-gccs-table1").set_value("0,0").run()
    assert any("seeds must be comma-separated distinct integers" in e.value for e in at.error)
    assert "studies-run" not in [b.key for b in at.button]
    at.radio(key="studies-source").set_value("my own (TOML)").run()
    at.text_area(key="studies-toml").set_value(TOML.replace('"gccs"]', '"gcs"]')).run()
    assert any("study objectives must be" in e.value and "gccs" in e.value for e in at.error)
    at.text_area(key="studies-toml").set_value("name = [").run()
    assert any("not valid" in e.value for e in at.error)


def test_a_toml_study_runs_as_a_job_and_its_results_are_shown_from_the_store():
    at = studies_page()
    at.radio(key="studies-source").set_value("my own (TOML)").run()
    at.text_area(key="studies-toml").set_value(TOML).run()
    assert "4 runs: 2 seeds of each cell." in page_text(at)
    at.button(key="studies-run").click().run()
    run_until(at, lambda a: "Study page-tiny finished: 4 runs" in page_text(a), timeout=180)
    progress, stored, cells = (d.value for d in at.dataframe)  # AppTest does not expose a dataframe's key
    assert sorted(progress["seed"]) == [0, 0, 1, 1] and set(progress["status"]) == {"done"}
    assert at.selectbox(key="studies-show").value == "page-tiny"
    assert list(stored["study"]) == ["page-tiny"] and list(stored["runs"]) == [4]
    assert list(cells["cell"]) == ["CE", "GCCS"] and list(cells["n"]) == ["2", "2"]
    claims = at.table[0].value
    assert list(claims["claim"]) == ["GCCS beats CE"]
    assert claims["verdict"][0] in ("reproduced", "not reproduced", "within noise")
    # run again: every run's values are in the store, so nothing trains or attacks again
    from cache import RunStore

    listed = RunStore().list_runs()
    created = {r["run_id"]: r["created"] for r in listed}
    at.button(key="studies-run").click().run()
    run_until(at, lambda a: "Study page-tiny finished: 4 runs" in page_text(a), timeout=60)
    assert {r["run_id"]: r["created"] for r in RunStore().list_runs()} == created
