"""The headless command line: the same engine as the app, JSON on stdout, progress on stderr.

    python -m engine train --dataset digits --model cnn --objective gccs [--objective ce] [--preset quick] [--seeds 0,1,2]
    python -m engine attack RUN_ID --attack pgd --eps 0,0.05,0.1 [--param steps=10] [--samples N]
    python -m engine evaluate RUN_ID [RUN_ID ...] --suite gccs-paper
    python -m engine runs
    python -m engine data
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from typing import Any

import torch

from cache import RunStore, StoreError, problems_message

from .config import (PRESET_NOTES, PRESETS, SETTINGS, ObjectiveSpec, TrainConfig, add_setting_flags, preset_params,
                     warnings_for)
from .data import DatasetUnavailable
from .objectives import OBJECTIVES, ConfigError, get_objective_class
from .train import Cancelled, TrainingFailed, train_job


def run_summary(record: dict[str, Any], reused: bool) -> dict[str, Any]:
    """The numbers the command line reports for one run."""
    final = record["final"]
    return {
        "run_id": record["run_id"],
        "objective": record["objective"],
        "dataset": record["dataset"],
        "model": record["model"],
        "params": record["settings"]["params"],
        "epochs": record["settings"]["epochs"],
        "seed": record["settings"]["seed"],
        "clean_accuracy": final["test_acc"],
        "macro_f1": final["test_f1"],
        "r_ab": final["r_ab"],
        "r_ab_ci95": final["r_ab_ci"],
        "train_seconds": record["timing"]["train_seconds"],
        "device": record["device"],
        "reused": reused,
        # stored all the same, and flagged: a run at chance (a too-high learning rate, too few epochs)
        "diverged": bool(record.get("diverged", False)),
        "diverged_reason": record.get("diverged_reason"),
    }


def parse_param(text: str) -> tuple[str, str, str | None]:
    """``[objective.]name=value`` -> (name, value, objective or None)."""
    if "=" not in text:
        raise ConfigError(f"--param must look like name=value or objective.name=value; got {text!r}")
    key, value = text.split("=", 1)
    objective, _, name = key.rpartition(".")
    return name.strip(), value.strip(), objective.strip() or None


def build_config(args: argparse.Namespace) -> TrainConfig:
    base: dict[str, Any] = dict(PRESETS[args.preset]) if args.preset else {}
    for key in SETTINGS:
        value = getattr(args, key)
        if value is not None:
            base[key] = value
    names = args.objective or ["ce"]
    # a preset's own constants (tuned to its data set) first, then --param on top
    params: dict[str, dict[str, Any]] = {n: preset_params(args.preset, n, base.get("dataset")) for n in names}
    for text in args.param or []:
        name, value, objective = parse_param(text)
        targets = [objective] if objective else [n for n in names if name in get_objective_class(n).defaults()]
        if objective and objective not in params:
            raise ConfigError(f"--param {text}: objective {objective!r} is not among --objective {', '.join(names)}")
        if not targets:
            allowed = sorted({p.name for n in names for p in get_objective_class(n).PARAMS})
            raise ConfigError(f"--param {name}: no chosen objective ({', '.join(names)}) has this constant; "
                              f"allowed: {', '.join(allowed) or 'none (they have no constants)'}")
        for target in targets:
            params[target][name] = value
    base["objectives"] = tuple(ObjectiveSpec(n, params[n]) for n in names)
    return TrainConfig.from_dict(base)


def progress_printer(quiet: bool):
    def on_event(event: dict[str, Any]) -> None:
        if quiet:
            return
        if event["type"] == "start":
            for w in event["warnings"]:
                print(f"warning: {w}", file=sys.stderr)
        elif event["type"] == "epoch":
            m = event["metrics"]
            print(f"[{event['objective']}] epoch {m['epoch']}: loss {m['loss']['loss']:.4g} "
                  f"train {m['train_acc']:.3f} test {m['test_acc']:.3f} r_AB {m['r_ab']:.2f} "
                  f"({m['samples_per_s']:.0f} samples/s)", file=sys.stderr, flush=True)
    return on_event


def interruptible(args: argparse.Namespace) -> threading.Event:
    """Apply --threads; return the event Ctrl-C sets, which the job checks between steps (a cancelled
    training stores nothing, a cancelled sweep or measure keeps the points it finished)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    cancel = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: cancel.set())
    return cancel


def cmd_train(args: argparse.Namespace) -> int:
    """Train every objective in lockstep, once per seed (--seeds: one job per seed, in order); print the
    runs, and their seed groups and paired verdicts against CE (engine.groups)."""
    from .groups import comparisons, parse_seeds, seed_groups

    seeds = None if args.seeds is None else parse_seeds(args.seeds, "--seeds")
    config = build_config(args)
    configs = [config] if seeds is None else [config.with_(seed=s) for s in seeds]
    store = RunStore(args.store)
    cancel = interruptible(args)
    if args.preset:
        print(PRESET_NOTES[args.preset], file=sys.stderr)
    existing = {c.run_id(o) for c in configs for o in c.objectives if store.has_run(c.run_id(o))}
    records = []
    try:
        for c in configs:
            if len(configs) > 1 and not args.quiet:
                print(f"seed {c.seed}:", file=sys.stderr, flush=True)
            records += train_job(c, store, force=args.force, on_event=progress_printer(args.quiet), cancel=cancel,
                                 data_dir=args.data_dir, download=args.download)
    except StoreError as exc:  # a full disk mid-job: say which runs are stored (they are intact) and which not
        ids = [c.run_id(o) for c in configs for o in c.objectives]
        stored = [r for r in ids if store.has_run(r)]
        print(json.dumps({"error": str(exc), "stored": stored, "not_stored": [r for r in ids if r not in stored],
                          "store": str(store.path)}, indent=2))
        raise
    groups = seed_groups(records)
    names = {o.name for o in config.objectives}
    diverged = [f"run {r['run_id']} ({r['objective']}, seed {r['settings']['seed']}): {r['diverged_reason']}"
                for r in records if r.get("diverged")]
    for warning in diverged:
        print(f"warning: {warning}", file=sys.stderr)
    out = {"runs": [run_summary(r, r["run_id"] in existing and not args.force) for r in records],
           "groups": groups,
           # paired verdicts (objective − CE, seed by seed) when CE and another objective were trained
           "comparisons": comparisons(groups) if "ce" in names and len(names) > 1 else [],
           "warnings": warnings_for(config, records[0]["num_classes"]) + diverged,
           "store": str(store.path)}
    if args.preset:
        out["preset"] = {"name": args.preset, "note": PRESET_NOTES[args.preset]}
    print(json.dumps(out, indent=2, ensure_ascii=False))
    return 0


def cmd_attack(args: argparse.Namespace) -> int:
    """Robust accuracy of a stored run under one attack over an ε grid; cached per (run, attack, ε)."""
    import time

    from .attacks import attack_params
    from .data import load_dataset
    from .robustness import accuracy_point, validate_eps
    from .sanity import sanity_warnings
    from .report import derive_listing_values
    from .train import load_run

    store = RunStore(args.store)
    if not store.has_run(args.run_id):
        raise ConfigError(f"run_id: no stored run {args.run_id!r}; `python -m engine runs` lists them")
    eps = validate_eps(args.attack, args.eps)
    raw = {}
    for text in args.param or []:
        name, value, _ = parse_param(text)
        raw[name] = value
    params = attack_params(args.attack, raw)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, objective, record = load_run(store, args.run_id)
    data = load_dataset(record["dataset"], data_dir=args.data_dir)
    n = len(data.y_test) if args.samples is None else min(args.samples, len(data.y_test))
    x, y = data.x_test[:n], data.y_test[:n]
    started = time.perf_counter()
    accuracy, cached = [], []
    for e in eps:
        result, hit = accuracy_point(store, args.run_id, model, objective, x, y, args.attack, params, e,
                                     seed=args.seed, force=args.force)
        accuracy.append(result["accuracy"])
        cached.append(hit)
        print(f"[{args.attack}] ε = {e:g}: accuracy alone {result['accuracy']:.4f} (an upper bound)"
              f"{' (cached)' if hit else ''}",
              file=sys.stderr, flush=True)
    derive_listing_values(store, [args.run_id])
    print(json.dumps({"run_id": args.run_id, "objective": record["objective"], "attack": args.attack,
                      "params": params, "eps": eps, "accuracy": accuracy, "cached": cached, "samples": n,
                      "seed": args.seed, "seconds": time.perf_counter() - started,
                      "note": "one attack alone: an upper bound on the robust accuracy; the headline is the "
                              "per-sample worst case of `python -m engine evaluate RUN --suite robust`",
                      "warnings": sanity_warnings(eps, accuracy, args.attack)},
                     indent=2, ensure_ascii=False))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """A named suite on several stored runs (engine.suites.SUITES) and its per-sample worst case; every
    attack's per-sample outcome is cached. Runs that differ only by seed are grouped: worst-case mean
    ± 95 % CI per ε, and paired verdicts against CE."""
    from .groups import comparisons, seed_groups
    from .suites import suite_job

    store = RunStore(args.store)
    cancel = interruptible(args)
    if args.threads:
        torch.set_num_threads(args.threads)

    def on_event(event: dict[str, Any]) -> None:
        if args.quiet:
            return
        if event["type"] == "point" and event["result"]["eps"] > 0:
            r = event["result"]
            print(f"[{r['attack']}] {r['run_id'][:6]} ε = {r['eps']:g}: accuracy alone {r['accuracy']:.4f} "
                  "(an upper bound)", file=sys.stderr, flush=True)
        elif event["type"] == "worst-case":
            print(f"[worst case] {event['run_id'][:6]} ε = {event['eps']:g}: {event['accuracy']:.4f}"
                  f"{' (cached)' if event['computed'] == 0 else ''}", file=sys.stderr, flush=True)

    out = suite_job(store, args.run_ids, args.suite, args.samples, args.seed, args.force, "cpu", args.data_dir,
                    on_event, cancel, eps=args.eps, batch_size=args.batch_size)
    records = [store.get_run(r) for r in dict.fromkeys(args.run_ids)]
    out["runs"] = [{"run_id": r["run_id"], "objective": r["objective"], "seed": r["settings"]["seed"]}
                   for r in records]
    worst = out["worst_case"]
    if worst:
        grid = worst[args.run_ids[0]]["eps"]
        metrics = [f"robust@{e:g}" for e in grid if e > 0]

        def metric_of(run_id: str, metric: str) -> float | None:
            e = float(metric.removeprefix("robust@"))
            row = worst.get(run_id)
            return row["accuracy"][row["eps"].index(e)] if row and e in row["eps"] else None

        groups = seed_groups(records, metric_of, metrics)
        out["groups"] = [{"objective": g["objective"], "run_ids": g["run_ids"], "seeds": g["seeds"],
                          "clean_accuracy": g["clean_accuracy"], "r_ab": g["r_ab"],
                          "worst_case": {m.removeprefix("robust@"): g[m] for m in metrics}} for g in groups]
        out["comparisons"] = comparisons(groups, metric_of, metrics=("clean_accuracy", "r_ab", *metrics))
    print(json.dumps(out, indent=2, ensure_ascii=False))
    return 0


def int_list(field: str, text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise ConfigError(f"{field} must be comma-separated integers, e.g. 50,100; got {text!r}") from None


def cmd_measure(args: argparse.Namespace) -> int:
    """DeepFool ρ, C&W ℓ2, an SPSA grid or the transfer matrix of stored runs (engine.robustness.MEASURES),
    cached per run and settings; prints this call's results and the Robustness page's tables."""
    from .measures import MEASURES, measure_job, measure_settings, measure_tables

    store = RunStore(args.store)
    for run_id in args.run_ids:
        if not store.has_run(run_id):
            raise ConfigError(f"run_id: no stored run {run_id!r}; `python -m engine runs` lists them")
    settings: dict[str, Any] = {"params": dict(parse_param(text)[:2] for text in args.param or [])}
    if args.measure == "spsa-grid":
        settings.update(eps=0.02 if args.eps is None else args.eps,
                        iterations=int_list("--iterations", args.iterations or "50,100"),
                        spsa_samples=int_list("--spsa-samples", args.spsa_samples or "512,1024,2048,8192"))
    elif args.measure == "transfer":
        settings.update(attack=args.attack, eps=0.1 if args.eps is None else args.eps)
    settings = measure_settings(args.measure, settings)
    cancel = interruptible(args)

    def on_event(event: dict[str, Any]) -> None:
        if event["type"] == "point" and not args.quiet:
            print(f"[{args.measure}] {event['result']['run_id'][:6]} done{' (cached)' if event['cached'] else ''}",
                  file=sys.stderr, flush=True)

    points = measure_job(store, args.run_ids, args.measure, settings, args.samples, args.seed, args.force, "cpu",
                         args.data_dir, on_event, cancel)["points"]
    records = {r: store.get_run(r) for r in args.run_ids}
    tables = measure_tables(store, args.run_ids, args.measure, records)
    # points: this call's results; every_cached: the tables of every cached setting of this measure for
    # these runs, as the Robustness page shows them
    print(json.dumps({"measure": args.measure, "description": MEASURES[args.measure], "settings": settings,
                      "samples": args.samples, "seed": args.seed, "points": points, "every_cached": tables},
                     indent=2, ensure_ascii=False, default=float))
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    """Every dataset: ready or missing, where it was looked for, how to get it (reads file names only)."""
    from .data import DATASET_NAMES, dataset_status

    print(json.dumps([dataset_status(name, args.data_dir) for name in DATASET_NAMES], indent=2, ensure_ascii=False))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    store = RunStore(args.store)
    records = store.list_runs()
    if records.problems:
        print(f"warning: {problems_message(records.problems)}", file=sys.stderr)
    print(json.dumps([run_summary(r, True) | {"created": r["created"]} for r in records], indent=2, ensure_ascii=False))
    return 0


def cmd_store(args: argparse.Namespace) -> int:
    """store check [--repair]: exit 0 when the store is clean (or was repaired), 1 when damage remains;
    store migrate: convert a store of the older pickled format once."""
    from cache import default_store_dir

    path = args.store or default_store_dir()
    if args.action == "migrate":
        from cache.migrate import migrate_store

        print(json.dumps(migrate_store(path), indent=2))
        return 0
    from cache.check import check_store

    report = check_store(path, repair=args.repair)
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0 if report["clean"] or "repaired" in report else 1


def study_of(args: argparse.Namespace):
    """The study named on the command line with its --dataset, --seeds and --epochs applied."""
    from .groups import parse_seeds
    from .studies import load_study

    study = load_study(args.study)
    changes: dict[str, Any] = {}
    if args.dataset:
        changes["datasets"] = [args.dataset]
    if args.seeds:
        changes["seeds"] = parse_seeds(args.seeds, "--seeds")
    if args.epochs:
        if "epochs" in study.grid:
            raise ConfigError(f"--epochs: study {study.name} varies epochs in its grid; give a study file instead")
        changes["settings"] = {**study.settings, "epochs": args.epochs}
    return study.with_(**changes) if changes else study


def study_output(results: dict[str, Any], table: str | None, metrics: str | None = None) -> str:
    """The results as JSON (cells, claims, verdicts), or the cells' and claims' tables (the cells'
    with the ``metrics`` given, comma-separated, else every metric)."""
    from .studies import claim_rows, result_rows, to_csv, to_latex, to_markdown

    if table is None:
        cells = [{k: c[k] for k in ("dataset", "objective", "label", "settings", "n", "seeds", "run_ids", "metrics",
                                    "gain", "paper")} for c in results["cells"]]
        return json.dumps({**{k: v for k, v in results.items() if k != "cells"}, "cells": cells}, indent=2,
                          ensure_ascii=False)
    render = {"markdown": to_markdown, "csv": to_csv,
              "latex": lambda rows: to_latex(rows, results["title"])}[table]
    claims = claim_rows(results)
    chosen = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None
    known = {m for c in results["cells"] for m in c["metrics"]}
    unknown = [m for m in chosen or [] if m not in known]
    if unknown:
        raise ConfigError(f"--metrics: {unknown[0]!r} is not a metric of this study's cells; they have: "
                          f"{', '.join(sorted(known)) or 'none yet'}")
    return render(result_rows(results, chosen)) + ("\n" + render(claims) if claims else "")


def study_progress(quiet: bool):
    def on_event(event: dict[str, Any]) -> None:
        if quiet:
            return
        if event["type"] == "study-start":
            print(f"study: {event['runs']} runs, {event['todo']} to train or evaluate", file=sys.stderr, flush=True)
        elif event["type"] == "study-progress":
            eta = f", about {event['eta']:.0f} s left" if event.get("eta") else ""
            error = f": {event['error']}" if event.get("error") else ""
            print(f"[{event['done']}/{event['total']}] {event['cell']} seed {event['seed']} ({event['run_id']}) "
                  f"{event['status']}{error}{eta}", file=sys.stderr, flush=True)
    return on_event


def cmd_study(args: argparse.Namespace) -> int:
    """study run NAME|FILE: train and evaluate a study's grid; study show NAME: its stored results;
    study list: the built-in reproductions and the stored studies."""
    from .reproductions import REPRODUCTIONS
    from .studies import load_study, stored_values, study_from_dict, study_results
    from .study_run import run_study

    store = RunStore(args.store)
    if args.action == "list":
        stored = store.list_studies()
        print(json.dumps({"built_in": [{"name": n, "title": d["title"]} for n, d in REPRODUCTIONS.items()],
                          "stored": [{"name": s["name"], "title": s["definition"].get("title", ""),
                                      "runs": len(s.get("values", {})), "updated": s.get("updated")} for s in stored],
                          "problems": stored.problems}, indent=2, ensure_ascii=False))
        return 0
    if not args.study:
        raise ConfigError(f"study {args.action} needs NAME|FILE: one of {', '.join(REPRODUCTIONS)}, a stored study's "
                          f"name or a TOML file")
    if args.action == "show":
        row = store.get_study(args.study)
        study = study_from_dict(row["definition"]) if row else load_study(args.study)
        results = study_results(study, stored_values(store, study), seconds=row.get("seconds") if row else None)
        print(study_output(results, args.table, args.metrics))
        return 0
    study = study_of(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    cancel = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: cancel.set())
    results = run_study(study, store, executor=args.executor, address=args.address, threads=args.threads,
                        cpus=args.cpus, device=args.device, data_dir=args.data_dir, on_event=study_progress(args.quiet),
                        cancel=cancel)
    print(study_output(results, args.table, args.metrics))
    return 0 if not results["failed"] else 1


MAX_THREADS = 256  # torch.set_num_threads far beyond the cores crashes the process (OpenMP)


def bounded_int(lo: int, hi: int):
    """An argparse type: an integer in lo … hi, else an error that names the flag and the range."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer in {lo} … {hi}; got {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be an integer in {lo} … {hi}; got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def add_evaluation_args(p: argparse.ArgumentParser, samples_default: int | None, progress: str | None) -> None:
    """The flags every command that evaluates stored runs shares (attack, evaluate, measure)."""
    samples_help = ("first N test samples (default: the whole test split)" if samples_default is None
                    else f"first N test samples (default {samples_default})")
    p.add_argument("--samples", type=bounded_int(1, 10_000_000), default=samples_default, help=samples_help)
    p.add_argument("--seed", type=bounded_int(0, 2**31 - 1), default=0, help="seed of the random starts (default 0)")
    p.add_argument("--threads", type=bounded_int(1, MAX_THREADS), help="torch CPU threads (default: torch's own)")
    p.add_argument("--data-dir", dest="data_dir")
    p.add_argument("--force", action="store_true", help="recompute even if cached")
    if progress:
        p.add_argument("--quiet", action="store_true", help=f"no per-{progress} progress on stderr")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine", description="Simplex Workbench, headless.")
    p.add_argument("--store", help="store folder (default: $SIMPLEX_STORE or ~/.cache/simplex-workbench/store)")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train one or more objectives in lockstep; prints JSON")
    t.add_argument("--preset", choices=list(PRESETS), default="quick",
                   help="the settings to start from, flags overriding them; the preset's note, with its measured time, "
                        "goes to stderr and into the JSON (default quick: " + PRESET_NOTES["quick"] + ")")
    t.add_argument("--objective", action="append", choices=list(OBJECTIVES),
                   help="repeat to train several in lockstep on identical batches (default: ce)")
    t.add_argument("--param", action="append", metavar="[OBJ.]NAME=VALUE",
                   help="an objective constant, e.g. mu_t=70 or gccs.lam=0.2 (repeatable)")
    seed = t.add_mutually_exclusive_group()
    seed.add_argument("--seeds", metavar="S,S,...",
                      help="several seeds, e.g. 0,1,2: every objective trained once per seed; the JSON adds "
                           "mean ± 95%% CI per objective and paired verdicts against CE")
    add_setting_flags(t, groups={"seed": seed})
    t.add_argument("--threads", type=bounded_int(1, MAX_THREADS), help="torch CPU threads (default: torch's own)")
    t.add_argument("--data-dir", dest="data_dir", help="dataset folder (default: $SIMPLEX_DATA_DIR)")
    t.add_argument("--download", action="store_true", help="download a torchvision dataset if missing")
    t.add_argument("--force", action="store_true", help="retrain even if the store has these settings")
    t.add_argument("--quiet", action="store_true", help="no per-epoch progress on stderr")
    t.set_defaults(func=cmd_train)

    a = sub.add_parser("attack", help="robust accuracy of a stored run over an ε grid; prints JSON")
    a.add_argument("run_id")
    from .attacks import ATTACKS  # noqa: PLC0415 (the attack list is only needed by this command)
    a.add_argument("--attack", choices=list(ATTACKS), default="pgd")
    a.add_argument("--eps", default="0,0.05,0.1",
                   help="comma-separated budgets: ℓ∞ ε in [0, 1] pixel units for most attacks (σ for gaussian-noise, "
                        "degrees for rotation)")
    a.add_argument("--param", action="append", metavar="NAME=VALUE", help="attack parameter, e.g. steps=10")
    add_evaluation_args(a, None, None)
    a.set_defaults(func=cmd_attack)

    from .measures import MEASURES  # noqa: PLC0415
    from .suites import DEFAULT_SUITE, SUITES  # noqa: PLC0415
    e = sub.add_parser("evaluate", help="a named attack suite on stored runs and its per-sample worst case; prints "
                                        "JSON", description="Suites: " + "; ".join(f"{k}: {v.description}"
                                                                                   for k, v in SUITES.items()))
    e.add_argument("run_ids", nargs="+", metavar="RUN_ID")
    e.add_argument("--suite", choices=list(SUITES), default=DEFAULT_SUITE,
                   help=f"default {DEFAULT_SUITE}: the headline worst case")
    e.add_argument("--eps", help="comma-separated budgets replacing every attack's default grid, e.g. 0.05,0.1,0.2")
    e.add_argument("--batch-size", dest="batch_size", type=int,
                   help="samples attacked at once (default 1000 on CPU, 4096 on a GPU; the papers use 100)")
    add_evaluation_args(e, None, "point")
    e.set_defaults(func=cmd_evaluate)

    m = sub.add_parser("measure", help="DeepFool, C&W, an SPSA grid or the transfer matrix of stored runs; "
                                       "prints JSON", description="; ".join(f"{k}: {v.removeprefix(k + ': ')}" for k, v in MEASURES.items()))
    m.add_argument("run_ids", nargs="+", metavar="RUN_ID")
    m.add_argument("--measure", choices=list(MEASURES), default="deepfool")
    m.add_argument("--param", action="append", metavar="NAME=VALUE",
                   help="a parameter of the measure's attack, e.g. steps=100 (cw), or of SPSA / the transfer attack")
    m.add_argument("--eps", type=float, help="ε of spsa-grid (default 0.02) or transfer (default 0.1)")
    m.add_argument("--attack", choices=[a for a, spec in ATTACKS.items() if spec.budget == "linf"], default="pgd",
                   help="transfer: the attack crafted on each substitute run (default pgd)")
    m.add_argument("--iterations", help="spsa-grid: comma-separated iteration counts (default 50,100)")
    m.add_argument("--spsa-samples", dest="spsa_samples",
                   help="spsa-grid: comma-separated perturbation samples (default 512,1024,2048,8192)")
    add_evaluation_args(m, 100, "run")
    m.set_defaults(func=cmd_measure)

    from .reproductions import REPRODUCTIONS  # noqa: PLC0415
    from .data import DATASET_NAMES  # noqa: PLC0415
    st = sub.add_parser("study", help="run, show or list studies: grids of runs over seeds and settings with the "
                                      "papers' numbers and verdicts; prints JSON",
                        description="Built-in reproductions: " + "; ".join(f"{n}: {d['title']}"
                                                                           for n, d in REPRODUCTIONS.items()))
    st.add_argument("action", choices=["run", "show", "list"])
    st.add_argument("study", nargs="?", metavar="NAME|FILE", help="a built-in reproduction or a study's TOML file")
    st.add_argument("--dataset", choices=list(DATASET_NAMES), help="run on this dataset only (default: the study's)")
    st.add_argument("--seeds", metavar="S,S,...", help="the seeds (default: the study's, 0,1,2)")
    st.add_argument("--epochs", type=bounded_int(1, 100_000), help="epochs of every run (default: the preset's)")
    st.add_argument("--executor", choices=["local", "ray"], default="local",
                    help="local: this process (default); ray: one Ray task per run, on --address or on a local "
                         "cluster started for the study")
    st.add_argument("--address", help="ray: the address of an existing cluster (e.g. ray://head:10001 or auto)")
    st.add_argument("--cpus", type=bounded_int(1, MAX_THREADS),
                    help="ray without --address: CPUs of the local cluster (default: all)")
    st.add_argument("--threads", type=bounded_int(1, MAX_THREADS),
                    help="torch CPU threads per run (ray: also the CPUs each task reserves; default 1 there)")
    st.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where runs train and are attacked")
    st.add_argument("--data-dir", dest="data_dir", help="dataset folder (default: $SIMPLEX_DATA_DIR)")
    st.add_argument("--table", choices=["markdown", "latex", "csv"], help="print the tables instead of JSON")
    st.add_argument("--metrics", metavar="M,M,...", help="--table: the cells' metrics to show, e.g. "
                                                         "\"clean_accuracy,worst case @ ε 0.05\" (default: all)")
    st.add_argument("--quiet", action="store_true", help="no per-run progress on stderr")
    st.set_defaults(func=cmd_study)

    d = sub.add_parser("data", help="every dataset: ready or missing, where it looked, how to get it; prints JSON")
    d.add_argument("--data-dir", dest="data_dir", help="dataset folder (default: $SIMPLEX_DATA_DIR)")
    d.set_defaults(func=cmd_data)

    r = sub.add_parser("runs", help="list stored runs as JSON")
    r.set_defaults(func=cmd_runs)

    s = sub.add_parser("store", help="check (and repair) or migrate the store; prints JSON")
    s.add_argument("action", choices=["check", "migrate"],
                   help="check: verify every checksum, list damaged runs and orphaned files; migrate: convert a "
                        "store of the older pickled format")
    s.add_argument("--repair", action="store_true",
                   help="check: quarantine damaged runs, delete stale results and orphaned files")
    s.set_defaults(func=cmd_store)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    store = args.store or os.environ.get("SIMPLEX_STORE")
    if store and os.path.exists(store) and not os.path.isdir(store):
        where = "--store" if args.store else "$SIMPLEX_STORE"
        print(f"error: {where}: {store!r} is a file; give a folder (it is created if missing)", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except (ConfigError, DatasetUnavailable, TrainingFailed, StoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Cancelled:
        print("cancelled: nothing was stored" if args.command == "train" else
              "cancelled: the points finished so far are cached", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
