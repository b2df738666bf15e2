"""The command line under generated input: every command, flags drawn from valid and hostile values.

Each case runs in this process through ``engine.__main__.main`` (a subprocess costs seconds of imports
per case). A case passes when it ends with exit code 0 (valid JSON on stdout) or 2 (a message on
stderr that starts with ``error:`` or is argparse's usage line), and never with an exception, a
traceback or another code. Valid cases train and attack for real, kept small (1 epoch, a few samples)
so that the 330 cases take well under a minute.
"""
import io
import json
import random
from contextlib import redirect_stderr, redirect_stdout

import pytest
import torch

from engine.__main__ import main
from engine.config import ADV_ATTACKS, ADV_LOSSES, OPTIMIZERS, SAMPLERS, SCHEDULES, preset
from engine.train import train_job

CASES = 330
BAD_INTS = ["0", "-1", "-5", "1.5", "x", "", "1e3", "18446744073709551616", "100001", "nan", " 3", "0x10"]
BAD_FLOATS = ["-1", "0", "2", "nan", "inf", "-inf", "x", "", "1e309", "1,5"]
BAD_WORDS = ["", "none", "PGD", "x" * 300, "ce;rm -rf", "../..", "\u202e", "0"]
BAD_EPS = ["", ",", "0.1,", "a,b", "2", "-0.1", "nan", "inf", "0.1;0.2", "1e309", ",".join(["0.1"] * 1000)]
BAD_LISTS = ["", "0", "-1", "x", "50,", "1e9", "3.5", "50,,100"]


def pick(rng: random.Random, good: list[str], bad: list[str], p_bad: float = 0.3) -> str:
    return rng.choice(bad) if rng.random() < p_bad else rng.choice(good)


def common_flags(rng: random.Random, tmp, samples=("1", "3")) -> list[str]:
    """--samples, --seed, --threads, --data-dir, --force, --quiet: each present or not."""
    flags: list[str] = []
    options = {
        "--samples": lambda: pick(rng, list(samples), BAD_INTS + ["10000001"]),
        "--seed": lambda: pick(rng, ["0", "1", "2147483647"], BAD_INTS + ["2147483648"]),
        "--threads": lambda: pick(rng, ["1", "2"], BAD_INTS + ["100000", "257"]),
        "--data-dir": lambda: pick(rng, [str(tmp)], [str(tmp / "missing"), "/dev/null", "\0x"]),
    }
    for flag, value in options.items():
        if rng.random() < 0.4:
            flags += [flag, value()]
    return flags + [f for f in ("--force", "--quiet") if rng.random() < 0.2]


def train_case(rng: random.Random, tmp) -> list[str]:
    argv = ["train", "--epochs", pick(rng, ["1"], BAD_INTS), "--latent-samples", pick(rng, ["10"], BAD_INTS),
            "--batch-size", pick(rng, ["100", "400"], BAD_INTS + ["1", "1000001", "2000"])]
    options = {
        "--dataset": lambda: pick(rng, ["digits"], ["mnist", "cifar10", "imagenet"] + BAD_WORDS),
        "--model": lambda: pick(rng, ["mlp", "cnn"], ["vgg"] + BAD_WORDS),
        "--optimizer": lambda: pick(rng, list(OPTIMIZERS), BAD_WORDS),
        "--schedule": lambda: pick(rng, list(SCHEDULES), BAD_WORDS),
        "--sampler": lambda: pick(rng, list(SAMPLERS), BAD_WORDS),
        "--lr": lambda: pick(rng, ["0.01", "0.1", "10"], BAD_FLOATS + ["10.5"]),
        "--momentum": lambda: pick(rng, ["0", "0.5", "0.999"], BAD_FLOATS),
        "--gamma": lambda: pick(rng, ["0.5", "1"], BAD_FLOATS),
        "--step-size": lambda: pick(rng, ["1", "10"], BAD_INTS),
        "--weight-decay": lambda: pick(rng, ["0", "0.01"], BAD_FLOATS),
        "--dropout": lambda: pick(rng, ["0", "0.95"], BAD_FLOATS + ["0.96"]),
        "--adv-attack": lambda: pick(rng, list(ADV_ATTACKS), ["cw"] + BAD_WORDS),
        "--adv-eps": lambda: pick(rng, ["0.03", "1"], BAD_FLOATS),
        "--adv-steps": lambda: pick(rng, ["1", "2"], BAD_INTS + ["1001"]),
        "--adv-step": lambda: pick(rng, ["0.01"], BAD_FLOATS),
        "--adv-loss": lambda: pick(rng, list(ADV_LOSSES), BAD_WORDS),
        "--adv-clean-weight": lambda: pick(rng, ["0", "0.5", "1"], BAD_FLOATS),
        "--init-from": lambda: pick(rng, [""], ["nope", "0" * 16] + BAD_WORDS, p_bad=0.8),
        "--objective": lambda: pick(rng, ["ce", "gccs", "mmc", "center"], ["softmax"] + BAD_WORDS),
        "--param": lambda: pick(rng, ["lam=0.1", "gccs.mu_t=40", "mu_t=70"],
                                ["lam", "=", "lam=x", "gccs.lam=-1", "kurtosis=square", "nope=1", "ce.mu_t=1",
                                 "lam=nan", "mmc.c_mm=1e309"]),
        "--seeds": lambda: pick(rng, ["0", "0,1"], ["", "0,0", "a", "-1", "1,", "2147483648", ",".join(map(str, range(999)))]),
        "--seed": lambda: pick(rng, ["0", "5"], BAD_INTS),
        "--preset": lambda: pick(rng, ["quick"], BAD_WORDS),
        "--device": lambda: pick(rng, ["cpu", "auto"], ["cuda", "tpu"]),
    }
    for flag, value in options.items():
        if rng.random() < 0.2:
            argv += [flag, value()]
    if rng.random() < 0.1:
        argv.append("--adv-targeted")
    return argv + common_flags(rng, tmp)[:4]  # --threads / --data-dir / --force / --quiet mostly


def attack_case(rng: random.Random, tmp, run_ids) -> list[str]:
    argv = ["attack", pick(rng, run_ids, ["nope", "", "../" + run_ids[0], run_ids[0][:8]])]
    if rng.random() < 0.7:
        argv += ["--attack", pick(rng, ["fgsm", "pgd", "gaussian-noise", "rotation"], ["pgd2", "cw;"] + BAD_WORDS)]
    if rng.random() < 0.7:
        argv += ["--eps", pick(rng, ["0", "0.05,0.1", "0.1"], BAD_EPS)]
    if rng.random() < 0.3:
        argv += ["--param", pick(rng, ["steps=2", "random_start=false"],
                                 ["steps=0", "steps=x", "steps", "=", "nope=1", "steps=1e9", "alpha=-1"])]
    return argv + common_flags(rng, tmp)


def evaluate_case(rng: random.Random, tmp, run_ids) -> list[str]:
    argv = ["evaluate"] + rng.sample(run_ids + ["nope"], rng.randint(1, 2))
    if rng.random() < 0.8:
        argv += ["--suite", pick(rng, ["pgd-paper", "gccs-paper"], ["robust2"] + BAD_WORDS, p_bad=0.4)]
    else:
        argv += ["--suite", "robust", "--samples", "1", "--eps", "0.1"]
    if rng.random() < 0.5:
        argv += ["--eps", pick(rng, ["0.1", "0.05,0.1"], BAD_EPS)]
    if rng.random() < 0.3:
        argv += ["--batch-size", pick(rng, ["1", "100"], BAD_INTS)]
    return argv + common_flags(rng, tmp, samples=("1",))


def measure_case(rng: random.Random, tmp, run_ids) -> list[str]:
    argv = ["measure"] + rng.sample(run_ids + ["nope"], rng.randint(1, 2))
    kind = pick(rng, ["deepfool", "spsa-grid", "transfer"], ["cw2"] + BAD_WORDS, p_bad=0.2)
    argv += ["--measure", kind, "--samples", pick(rng, ["1", "2"], BAD_INTS)]
    if kind == "spsa-grid":
        argv += ["--iterations", pick(rng, ["1", "1,2"], BAD_LISTS), "--spsa-samples", pick(rng, ["2", "2,4"], BAD_LISTS)]
    if rng.random() < 0.4:
        argv += ["--eps", pick(rng, ["0.02", "0.1"], BAD_FLOATS)]
    if rng.random() < 0.3:
        argv += ["--attack", pick(rng, ["fgsm", "pgd"], ["rotation", "cw"] + BAD_WORDS)]
    if rng.random() < 0.3:
        argv += ["--param", pick(rng, ["steps=2", "overshoot=0.02"], ["steps=-1", "x=1", "steps"])]
    return argv + common_flags(rng, tmp, samples=("1", "2"))[2:]


def store_case(rng: random.Random, tmp) -> list[str]:
    argv = [rng.choice(["runs", "store"])]
    if argv[0] == "store":
        argv.append(pick(rng, ["check", "migrate"], ["fsck", ""] + BAD_WORDS))
        if rng.random() < 0.3:
            argv.append("--repair")
    return argv


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A store holding two tiny runs (CE and GCCS, one epoch) for the cases that read runs."""
    from cache import RunStore

    path = tmp_path_factory.mktemp("fuzz-store")
    store = RunStore(path)
    records = train_job(preset("quick", ["ce", "gccs"], epochs=1, latent_samples=10), store)
    store.close()
    return path, [r["run_id"] for r in records]


def generated_cases(tmp, run_ids, n=CASES):
    rng = random.Random(20261204)
    makers = [lambda: train_case(rng, tmp), lambda: attack_case(rng, tmp, run_ids),
              lambda: evaluate_case(rng, tmp, run_ids), lambda: measure_case(rng, tmp, run_ids),
              lambda: store_case(rng, tmp)]
    weights = [0.3, 0.25, 0.15, 0.2, 0.1]
    for _ in range(n):
        argv = rng.choices(makers, weights)[0]()
        where = rng.random()
        if where < 0.05:
            argv = ["--store", str(tmp / "a-file")] + argv  # a file, not a folder
        elif where < 0.08:
            argv = ["--store", str(tmp / "new" / "nested")] + argv  # created on write, empty on read
        yield argv


def output_problem(argv: list[str], out) -> str | None:
    """What is wrong with a successful command's JSON, judged against what was asked for."""
    if "--samples" in argv and isinstance(out, dict) and "samples" in out:
        asked = int(argv[argv.index("--samples") + 1])
        if not 1 <= out["samples"] <= asked:
            return f"asked for {asked} samples, reports {out['samples']}"
    if argv[0] in ("attack", "evaluate") and isinstance(out, dict):
        numbers = [a for a in out.get("accuracy", [])]
        if any(not 0 <= a <= 1 for a in numbers):
            return f"an accuracy outside [0, 1]: {numbers}"
    return None


@pytest.mark.slow
def test_generated_command_lines_end_in_exit_0_or_a_clear_message(stored, tmp_path, monkeypatch):
    path, run_ids = stored
    monkeypatch.setenv("SIMPLEX_STORE", str(path))
    (tmp_path / "a-file").write_text("not a store")
    threads = torch.get_num_threads()
    outcomes = {0: 0, 2: 0}
    failures = []
    for argv in generated_cases(tmp_path, run_ids):
        out, err = io.StringIO(), io.StringIO()
        try:
            with redirect_stdout(out), redirect_stderr(err):
                try:
                    code = main(argv)
                except SystemExit as exit_:  # argparse: --help (0) or a usage error (2)
                    code = exit_.code
        except Exception as exc:  # noqa: BLE001 (the finding this test exists for)
            failures.append((argv, f"{type(exc).__name__}: {exc}"))
            continue
        finally:
            torch.set_num_threads(threads)
        stderr = err.getvalue()
        if code not in outcomes or "Traceback" in stderr:
            failures.append((argv, f"exit {code}: {stderr[-300:]}"))
        elif code == 0:
            problem = output_problem(argv, json.loads(out.getvalue()))
            if problem:
                failures.append((argv, problem))
        elif not any(line.startswith(("error:", "usage:")) or ": error: " in line for line in stderr.splitlines()):
            failures.append((argv, f"exit 2 without a message: {stderr[-300:]!r}"))
        if code in outcomes:
            outcomes[code] += 1
    print(f"\n{CASES} generated command lines: {outcomes[0]} exit 0, {outcomes[2]} exit 2, {len(failures)} failures")
    assert not failures, "\n".join(f"{' '.join(map(repr, a))}\n    {f}" for a, f in failures[:20])
    assert outcomes[0] >= 40 and outcomes[2] >= 150  # both kinds of case are exercised
