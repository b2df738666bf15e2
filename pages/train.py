"""Train page: every setting of a training job, objectives in lockstep, live curves."""
import streamlit as st

from engine.config import PRESET_NOTES, PRESETS, SETTINGS, ObjectiveSpec, TrainConfig, preset_params, warnings_for
from engine.data import DATASETS
from engine.groups import parse_seeds
from engine.objectives import OBJECTIVES, ConfigError
from engine.report import training_estimate
from ui.seeds import seed_jobs_view
from ui.state import get_manager, get_store
from ui.widgets import (comparison_view, dataset_notice, fmt_seconds, listing_warning, param_input, setting_input,
                        worst_case_view)

MODEL_LABELS = {"mlp": "MLP", "cnn": "LeNet-5-style CNN", "resnet18": "ResNet-18 (small-image stem)",
                "resnet20": "CIFAR ResNet-20", "resnet32": "CIFAR ResNet-32"}
# What we measured and a user should know before pressing Train (closing notes of issues 2 and 3).
OBJECTIVE_NOTES = {
    "mat": "The constants' defaults α = 1, β = 6 and BIBO ε 0.3 / step 0.01 / 40 steps are TRADES' MNIST ones (the "
           "MAT paper's appendix with its recipe is missing). On digits under the quick preset they reached only 20 % "
           "test accuracy, so the quick preset sets β = 0.5 and BIBO ε 0.1 / step 0.025 / 10 steps (96 % test "
           "accuracy, 56 % under PGD-10 alone at ε 0.1, an upper bound on the worst case; β = 1: 90 %); other data sets get the defaults. BIBO costs about "
           "(inner steps + 1) model passes per step.",
    "pcl": "The first warmup_epochs train CE only (PCL Algorithm 1); pull and push are still plotted.",
}
quick = PRESETS["quick"]
LONG_TRAINING_S = 3600  # beyond this, the estimate is a warning beside the Train button


def estimate_text(estimate: dict, epochs: int, jobs: int) -> str:
    """The time the chosen epochs would take, said as ``engine.report.training_estimate`` judged it."""
    rates = ", ".join(f"{o} {s:.3g} s" for o, s in estimate["per_epoch"].items())
    if estimate["seconds"] is None:
        return (f"epochs {epochs:,}: no estimate for {', '.join(estimate['missing'])} (no stored run of this dataset "
                "and model on this device); the job panel shows an ETA once it runs." +
                (f" Per epoch: {rates}." if rates else ""))
    total = estimate["seconds"] * jobs
    return (f"epochs {epochs:,}: about {fmt_seconds(total)} of training steps" + (f" for {jobs} seeds" if jobs > 1 else "")
            + f" ({rates} an epoch, the median of {estimate['runs']} stored runs; test passes add to it).")

st.title("Train")
st.caption("Defaults are the " + PRESET_NOTES["quick"] + ". Several objectives train in lockstep on identical "
           "batches from the same initial weights, so their curves are directly comparable.")

names = st.multiselect("objectives", list(OBJECTIVES), default=["ce", "gccs"],
                       format_func=lambda n: f"{n} · {OBJECTIVES[n].title}",
                       help="Each becomes one stored run; all of them see the same batches.")
# Outside the form, so that what depends on them follows as soon as they change: the constants a
# preset tunes to its data set, and the stored runs one can fine-tune from.
c1, c2, c3 = st.columns(3)
values = {"dataset": setting_input("dataset", c1, quick["dataset"], format_func=lambda d: f"{d} · {DATASETS[d].label}"),
          "model": setting_input("model", c2, quick["model"], format_func=MODEL_LABELS.get),
          "device": setting_input("device", c3)}
dataset, model = values["dataset"], values["model"]
dataset_notice(dataset, c1)
# No st.form: every input is checked as it changes, and Train stays off while one is refused.
with st.container(border=True):
    c1, c2, c3, c4 = st.columns(4)
    for name, col in zip(("epochs", "batch_size", "lr"), (c1, c2, c3)):
        values[name] = setting_input(name, col, quick[name])
    seeds_text = c4.text_input("seeds", value=str(quick["seed"]),
                               help="Comma-separated, e.g. 0,1,2: one job per seed. With ≥ 2 seeds the page adds mean "
                                    "± 95 % CI per objective and paired per-seed verdicts against CE.")

    with st.expander("optimiser, schedule, regularisation, sampler"):
        for row in (("optimizer", "momentum", "schedule", "weight_decay"), ("step_size", "gamma", "dropout", "sampler"),
                    ("latent_samples", "eval_every", "augment", "precision"), ("channels_last", "compile")):
            for name, col in zip(row, st.columns(4)):
                values[name] = setting_input(name, col, quick.get(name))

    with st.expander("adversarial training and fine-tuning"):
        adv_loss_text = {"adaptive": "the adaptive objective", "ce": "CE on the logits"}.get
        for name, col in zip(("adv_attack", "adv_eps", "adv_step", "adv_steps"), st.columns(4)):
            values[name] = setting_input(name, col)
        c1, c2, c3, c4 = st.columns(4)
        values["adv_loss"] = setting_input("adv_loss", c1, format_func=adv_loss_text)
        values["adv_clean_weight"] = setting_input("adv_clean_weight", c2)
        values["adv_targeted"] = setting_input("adv_targeted", c3)
        listing = get_store().list_runs()
        listing_warning(listing)
        stored = [r for r in listing if r["dataset"] == dataset and r["model"] == model]
        init = SETTINGS["init_from"]
        values["init_from"] = c4.selectbox(init.label, [""] + [r["run_id"] for r in stored],
                                            format_func=lambda r: "no: train from scratch" if not r else next(
                                                f"{x['objective'].upper()} ({r[:6]}) · {x['settings']['epochs']} ep · "
                                                f"acc {x['final']['test_acc']:.3f}" for x in stored if x["run_id"] == r),
                                            help=init.help + " (a run of this dataset and model).")

    params: dict[str, dict] = {}
    for name in names:
        cls = OBJECTIVES[name]
        if not cls.PARAMS:
            continue
        with st.expander(f"{name} constants · {cls.citation}", expanded=True):
            if name in OBJECTIVE_NOTES:
                st.caption(OBJECTIVE_NOTES[name])
            params[name] = {}
            per_row = 5
            for start in range(0, len(cls.PARAMS), per_row):
                row = cls.PARAMS[start:start + per_row]
                tuned = preset_params("quick", name, dataset)  # empty off digits: the defaults
                for param, col in zip(row, st.columns(per_row)):
                    with col:
                        # its own key per prefill, so that changing the data set swaps the value
                        suffix = "-quick" if param.name in tuned else ""
                        params[name][param.name] = param_input(
                            cls, param, key=f"param-{name}-{param.name}{suffix}",
                            preset=("quick", tuned[param.name]) if param.name in tuned else None)

    c1, c2 = st.columns(2)
    download = c1.checkbox("download the dataset if it is missing", value=False,
                           help="Uses torchvision's downloader; needs network access.")
    force = c2.checkbox("retrain even if stored", value=False)
    try:
        seeds = parse_seeds(seeds_text, "seeds")
        config = TrainConfig.from_dict(dict(
            values, seed=seeds[0], objectives=tuple(ObjectiveSpec(n, params.get(n, {})) for n in names)))
        refused = None
    except (ConfigError, ValueError) as exc:
        config, refused = None, str(exc)
    if refused:
        st.error(f"Not ready: {refused}")
    else:
        estimate = training_estimate(listing, dataset, model, values["device"], names,
                                     int(values["epochs"]))
        timing = estimate_text(estimate, int(values["epochs"]), len(seeds))
        (st.warning if (estimate["seconds"] or 0) * len(seeds) > LONG_TRAINING_S else st.caption)(timing)
    submitted = st.button("▶ Train", type="primary", disabled=refused is not None)

if submitted and config is not None:
    try:
        configs = [config.with_(seed=seed) for seed in seeds]
        job_ids = [get_manager().submit_training(c, force=force, download=download,
                                                 title=None if len(seeds) == 1 else
                                                 f"{' vs '.join(o.name.upper() for o in c.objectives)} · {c.dataset} · "
                                                 f"{c.model} · {c.epochs} ep · seed {c.seed}")
                   for c in configs]
        st.session_state["train_job"], st.session_state["train_jobs"] = job_ids[0], job_ids
        for warning in warnings_for(config, DATASETS[dataset].num_classes):
            st.warning(warning)
    except (ConfigError, ValueError) as exc:
        st.error(f"Not started: {exc}")

job_id = st.session_state.get("train_job")
if job_id:
    from engine.jobs import FAILED

    followed = get_manager().get(job_id)
    submitted = followed.settings.get("config", {})
    if followed.status == FAILED and (submitted.get("dataset"), submitted.get("model")) != (dataset, model):
        # the inputs moved on since: the failure belongs to the old settings, not to these
        st.caption(f"The last job ({followed.title}) failed; its message stays in the job panel.")
        job_id = None
if job_id:
    st.subheader("Live curves")
    comparison_view(job_id, key="train")  # the first seed, live
    seed_jobs_view(st.session_state.get("train_jobs", [job_id]), key="train")
    worst_case_view(st.session_state.get("train_jobs", [job_id]), key="train")
