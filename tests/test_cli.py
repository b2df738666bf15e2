"""The command line as a user runs it: a subprocess, JSON on stdout, errors on stderr.

The cases of bad input run in this process (``main``, as ``python -m engine`` calls it): a subprocess
spends seconds importing torch before it reaches the same message.
"""
import io
import json
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from engine.__main__ import main

ROOT = Path(__file__).resolve().parents[1]


def cli(*args, store, check=True):
    env = {**os.environ, "SIMPLEX_STORE": str(store), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def in_process(*args, store, monkeypatch) -> subprocess.CompletedProcess:
    """``python -m engine ARGS`` run by its ``main`` in this process: exit code, stdout, stderr."""
    monkeypatch.setenv("SIMPLEX_STORE", str(store))
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exit_:  # argparse's usage errors
            code = exit_.code
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def test_train_prints_json_then_reuses_and_lists(tmp_path):
    args = ["train", "--dataset", "digits", "--model", "cnn", "--objective", "gccs", "--objective", "ce",
            "--epochs", "3", "--param", "lam=0.1", "--threads", "2"]
    proc = cli(*args, store=tmp_path)
    out = json.loads(proc.stdout)
    assert [r["objective"] for r in out["runs"]] == ["gccs", "ce"]
    for run in out["runs"]:
        assert set(run) >= {"run_id", "clean_accuracy", "macro_f1", "r_ab", "r_ab_ci95", "train_seconds"}
        assert 0.1 < run["clean_accuracy"] <= 1 and run["r_ab"] > 0 and run["train_seconds"] > 0
        assert run["reused"] is False
    assert out["runs"][0]["params"]["lam"] == 0.1 and out["runs"][0]["epochs"] == 3
    assert "[gccs] epoch 3" in proc.stderr  # progress goes to stderr

    again = json.loads(cli(*args, store=tmp_path).stdout)
    assert [r["reused"] for r in again["runs"]] == [True, True]
    assert [r["run_id"] for r in again["runs"]] == [r["run_id"] for r in out["runs"]]

    listed = json.loads(cli("runs", store=tmp_path).stdout)
    assert {r["run_id"] for r in listed} == {r["run_id"] for r in out["runs"]}


@pytest.mark.parametrize("args, words", [
    (["--epochs", "0"], ["epochs", "≥ 1"]),
    (["--objective", "gccs", "--param", "kurtosis=square"], ["gccs.kurtosis", "abs, literal"]),
    (["--objective", "ce", "--param", "mu_t=5"], ["mu_t", "ce"]),
    (["--param", "gccs.mu_t=5"], ["gccs", "not among"]),
    (["--dataset", "mnist", "--data-dir", "/nonexistent"], ["mnist", "/nonexistent/MNIST/raw/train-images-idx3-ubyte"]),
    (["--batch-size", "2000", "--epochs", "1"], ["batch_size"]),
    (["--init-from", "nope", "--epochs", "1"], ["init_from", "'nope'", "python -m engine runs"]),
    (["--adv-attack", "pgd", "--adv-eps", "2"], ["adv_eps", "≤ 1"]),
])
def test_bad_input_is_a_clear_message_and_exit_code_2(tmp_path, monkeypatch, args, words):
    proc = in_process("train", *args, store=tmp_path, monkeypatch=monkeypatch)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    for word in words:
        assert word in proc.stderr
    assert not any((tmp_path).glob("*")) or json.loads(in_process("runs", store=tmp_path,
                                                                  monkeypatch=monkeypatch).stdout) == []


def test_choices_are_checked_by_argparse(tmp_path, monkeypatch):
    proc = in_process("train", "--model", "vgg", store=tmp_path, monkeypatch=monkeypatch)
    assert proc.returncode == 2 and "invalid choice: 'vgg'" in proc.stderr and "resnet18" in proc.stderr


def test_separability_warning_is_reported(tmp_path, monkeypatch):
    out = json.loads(in_process("train", "--objective", "gccs", "--param", "mu_t=3", "--epochs", "1", "--quiet",
                                store=tmp_path, monkeypatch=monkeypatch).stdout)
    assert any("√(2K)" in w for w in out["warnings"])


@pytest.mark.parametrize("args, words", [
    (["attack", "RUN", "--samples", "0"], ["--samples", "1 … 10000000", "got 0"]),
    (["attack", "RUN", "--samples", "-5"], ["--samples", "got -5"]),
    (["evaluate", "RUN", "--threads", "100000"], ["--threads", "1 … 256"]),
    (["measure", "RUN", "--threads", "-1"], ["--threads", "got -1"]),
    (["attack", "RUN", "--seed", "18446744073709551616"], ["--seed", "0 … 2147483647"]),
    (["train", "--threads", "0"], ["--threads", "1 … 256"]),
])
def test_out_of_range_numbers_are_refused_with_the_flag_and_its_range(tmp_path, monkeypatch, args, words):
    proc = in_process(*args, store=tmp_path, monkeypatch=monkeypatch)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert all(w in proc.stderr for w in words), proc.stderr


def test_a_store_that_is_a_file_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "not-a-folder"
    path.write_text("x")
    proc = in_process("--store", str(path), "runs", store=tmp_path, monkeypatch=monkeypatch)
    assert proc.returncode == 2 and "is a file" in proc.stderr and "--store" in proc.stderr
    proc = cli("runs", store=path, check=False)
    assert proc.returncode == 2 and "$SIMPLEX_STORE" in proc.stderr and "Traceback" not in proc.stderr
