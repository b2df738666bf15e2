"""Examples page: a gallery of clean images, each chosen run's own white-box adversarial image and
the perturbation, with every run's prediction and confidence. The gallery is computed by a background
job (``JobManager.submit_examples``) on the device's worker, never on the page thread; the page shows
its progress and draws the gallery when it is done."""
import streamlit as st

from engine.attacks import ATTACKS, attack_params, budget_of
from engine.data import DATASETS
from engine.examples import DEFAULT_IMAGES, MAX_IMAGES, gallery_rows, parse_indices, upscale
from engine.jobs import DONE, FINISHED
from engine.objectives import ConfigError
from engine.train import TrainingFailed
from ui.export import table_downloads
from ui.state import open_store, store_errors
from ui.widgets import CHART_REFRESH_S, attack_param_inputs, listing_warning, released_note, run_label

KEPT_GALLERIES = 4  # galleries kept per session, so going back to earlier settings is instant
TILE_PX = 112  # images are enlarged to about this width and drawn at exactly their size (a long caption
# would otherwise stretch, and blur, the image to its own width)

st.title("Examples")
st.caption("Each run is attacked on its own (white-box, its own model and objective) from the same seeded "
           "start. Perturbations are amplified to the full grey range: mid-grey is no change, black and white "
           "the largest decrease and increase in that image (at most ε for an ℓ∞ attack).")

store, manager = open_store()
records = store.list_runs()
listing_warning(records)
if not records:
    st.info("The store is empty. Train something on the Start or Train page, or with `python -m engine train`.")
    st.stop()

datasets = sorted({r["dataset"] for r in records})
dataset = st.selectbox("dataset", datasets, key="examples-dataset") if len(datasets) > 1 else datasets[0]
candidates = [r for r in records if r["dataset"] == dataset]
labels = {r["run_id"]: f"{run_label(r['objective'], r['run_id'])} · {r['model']} · {r['settings']['epochs']} ep · "
                       f"seed {r['settings']['seed']} · acc {r['final']['test_acc']:.3f}" for r in candidates}
chosen = st.multiselect("runs", list(labels), default=list(labels)[:2], format_func=labels.get,
                        key=f"examples-runs-{dataset}")

left, middle, right = st.columns([3, 1, 1])
attack = left.selectbox("attack", list(ATTACKS), index=list(ATTACKS).index("pgd") if "pgd" in ATTACKS else 0,
                        format_func=lambda a: f"{a} · {ATTACKS[a].title}", key="examples-attack")
budget = budget_of(attack)
if ATTACKS[attack].budget == "none":
    eps = None
    middle.caption("No budget: a minimal attack makes each perturbation as small as it can.")
else:
    if ATTACKS[attack].budget == "linf":  # MNIST-like data: the papers' ε are tenths; colour data: 8/255
        default = 0.1 if DATASETS[dataset].shape[0] == 1 else 8 / 255
    else:  # σ, angle, ℓ2 step: a middle value of the attack's own default grid
        default = next((g for g in budget.grid[len(budget.grid) // 2:] if g > 0), budget.maximum)
    eps = middle.number_input("ε", min_value=budget.minimum, max_value=budget.maximum, value=float(default),
                              step=(budget.maximum - budget.minimum) / 100, format="%g",
                              key=f"examples-eps-{dataset}-{attack}", help=budget.label)
seed = right.number_input("seed", min_value=0, value=0, step=1, key="examples-seed",
                          help="Seeds the attack's random start (the same for every run).")
# the gallery shows one run of the attack, so restarts (refused above 1) get no input
raw = attack_param_inputs(attack, key="examples", exclude=("restarts",))

how = st.radio("images", ["from different classes", "by test index"], horizontal=True, key="examples-how")
which, _ = st.columns([1, 2])
if how == "from different classes":
    images_wanted = int(which.number_input("how many", min_value=1, max_value=MAX_IMAGES, value=DEFAULT_IMAGES,
                                        key="examples-count",
                                        help="The first test image of class 0, 1, 2, … (then the second of each)."))
    index_text = None
else:
    index_text = which.text_input("test indices", value="0, 1, 2", key="examples-indices",
                               help=f"Comma-separated positions in the test split (at most {MAX_IMAGES}).")
generate = st.button("Generate", type="primary", icon=":material/auto_awesome:", key="examples-generate")

if not chosen:
    st.info("Choose at least one run.")
    st.stop()
try:
    params = attack_params(attack, raw)
    indices = parse_indices(index_text) if index_text is not None else images_wanted
except ConfigError as error:
    st.error(str(error))
    st.stop()

at_budget = "" if eps is None else f" at ε = {eps:g}"
settings = (tuple(chosen), attack, eps, tuple(sorted(params.items())),
            tuple(indices) if isinstance(indices, list) else indices, int(seed))
galleries = st.session_state.setdefault("examples-galleries", {})  # settings -> finished gallery
pending = st.session_state.setdefault("examples-pending", {})  # settings -> id of the job computing it
failures = st.session_state.setdefault("examples-failures", {})  # settings -> why its job did not finish


def keep(key, gallery) -> None:
    galleries[key] = gallery
    while len(galleries) > KEPT_GALLERIES:  # dicts keep insertion order: drop the oldest
        galleries.pop(next(iter(galleries)))


def collect() -> None:
    """Move the finished jobs' galleries (or their errors) out of ``pending``."""
    for key, job_id in list(pending.items()):
        try:
            job = manager.get(job_id)
        except KeyError:  # the manager was replaced (server restart): the job is gone
            pending.pop(key)
            continue
        if job.released:
            failures[key] = (job.status, released_note(job))
        elif job.status == DONE:
            keep(key, job.result)
            failures.pop(key, None)
        elif job.status in FINISHED:
            failures[key] = (job.status, job.error or job.status)
        else:
            continue
        pending.pop(key)


collect()
if generate and settings not in galleries and settings not in pending:
    failures.pop(settings, None)
    try:
        pending[settings] = manager.submit_examples(list(chosen), attack, eps, params, indices, int(seed),
                                                    device="auto")
    except (ConfigError, TrainingFailed) as error:
        st.error(str(error))
        st.stop()


@st.fragment(run_every=CHART_REFRESH_S if pending else None)
@store_errors()
def progress_panel() -> None:
    for key, job_id in list(pending.items()):
        try:
            job = manager.get(job_id)
        except KeyError:
            continue
        if job.status in FINISHED:
            st.rerun(scope="app")  # the whole page collects and draws the gallery
        bar, stop = st.columns([5, 1])
        text = ("queued: waiting for the worker of " + job.device if job.status == "queued"
                else f"attacking on {job.device}: {len(job.points)}/{len(key[0])} runs done")
        bar.progress(job.progress, text=f"{job.title} · {text}")
        if stop.button("Cancel", key=f"examples-cancel-{job_id}", icon=":material/cancel:"):
            manager.cancel(job_id)


progress_panel()
if settings in failures:
    status, message = failures[settings]
    if status == "cancelled":
        st.info(f"Cancelled ({message}). Press Generate to start again.")
    else:
        st.error(message)
gallery = galleries.get(settings)
if gallery is None:
    if settings not in pending and settings not in failures:
        st.info("Press Generate to attack the chosen runs with these settings.")
    st.stop()

names = gallery["class_names"]
runs = gallery["runs"]
fooled = {r["run_id"]: sum(im["runs"][r["run_id"]]["adv_pred"] != im["label"] for im in gallery["images"])
          for r in runs}
st.caption(" · ".join(f"{run_label(r['objective'], r['run_id'])}: {fooled[r['run_id']]} of "
                      f"{len(gallery['images'])} misclassified under attack" for r in runs))


def tile(column, image, caption: str) -> None:
    # PNG, not the default JPEG: the blocks of an upscaled 8×8 digit must keep their sharp edges
    enlarged = upscale(image, TILE_PX)
    column.image(enlarged, caption=caption, width=enlarged.shape[1], output_format="PNG")


def verdict(pred: int, conf: float, label: int) -> str:
    return f"{names[pred]} ({conf:.2f}) " + ("✓" if pred == label else "✗ wrong")


header = st.columns(1 + 2 * len(runs))
header[0].markdown("**clean**")
for i, run in enumerate(runs):
    name = run_label(run["objective"], run["run_id"])
    header[1 + 2 * i].markdown(f"**{name}** perturbation")
    header[2 + 2 * i].markdown(f"**{name}** adversarial")
for image in gallery["images"]:
    row = st.columns(1 + 2 * len(runs))
    tile(row[0], image["clean"], f"#{image['index']} · true {names[image['label']]}")
    for i, run in enumerate(runs):
        out = image["runs"][run["run_id"]]
        tile(row[1 + 2 * i], out["perturbation_display"], f"‖δ‖∞ {out['linf']:.3f}")
        # the run's two predictions together, under the image it made of the clean one
        tile(row[2 + 2 * i], out["adversarial"], f"clean: {verdict(out['clean_pred'], out['clean_conf'], image['label'])}"
                                                 f" → adv: {verdict(out['adv_pred'], out['adv_conf'], image['label'])}")
table_downloads(gallery_rows(gallery), f"examples-{attack}" + ("" if eps is None else f"-eps-{eps:g}"),
                key="examples-export")
