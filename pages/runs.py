"""Runs page: every stored run in one table (with its cached worst-case robust accuracy), export, and
per run the checkpoint download and deletion."""
import streamlit as st

from engine.attacks import ATTACKS, budget_of
from engine.report import NOT_EVALUATED, cached_attacks, runs_table, worst_case_columns
from ui.export import table_downloads
from ui.state import open_store
from ui.widgets import listing_warning, run_label

st.title("Runs")
st.caption("Every stored run. Overhead is the training time relative to the CE run of the same setting "
           "(same data, model, recipe and seed; GCCS Table 8). Robust accuracy is read from cached "
           "evaluations only; this page never runs an attack. **Worst case @ ε** is the headline robust "
           "accuracy: the share of test samples that no ℓ∞ attack tried on the run broke (the Robustness page's "
           "suites and sweeps). One attack's accuracy alone is an upper bound on it, shown only on request.")

store, _ = open_store()
deleted = st.session_state.pop("runs-deleted", None)
if deleted:
    st.success(f"Deleted {deleted} with its checkpoint, latents and cached results.")
records = store.list_runs()
listing_warning(records)
if not records:
    st.info("The store is empty. Train something on the Start or Train page, or with `python -m engine train`.")
    st.stop()

NONE = "—"  # no single attack: the worst case alone
pairs = cached_attacks(store, [r["run_id"] for r in records])
attack = eps = None
if pairs:
    attacks = [NONE] + list(dict.fromkeys(a for a, _ in pairs))
    left, right, _ = st.columns([2, 1, 3])
    chosen = left.selectbox("also one attack alone (upper bound)", attacks, key="runs-attack",
                            format_func=lambda a: "none" if a == NONE else
                            f"{a} · {ATTACKS[a].title}" if a in ATTACKS else a,
                            help="An attack's own cached accuracy, beside the worst case it bounds from above "
                                 "(Robustness page, or `python -m engine attack`).")
    if chosen != NONE:
        attack = chosen
        budgets = [e for a, e in pairs if a == attack]
        # ε 0 is the clean accuracy, not a robust one: start at the first budget above it
        eps = right.selectbox("ε", budgets, index=next((i for i, e in enumerate(budgets) if e > 0), 0),
                              key=f"runs-eps-{attack}", format_func="{:g}".format,
                              help=budget_of(attack).label if attack in ATTACKS else None)

rows = runs_table(store, attack, eps, records)
worst = worst_case_columns(rows)
if not worst:
    st.caption(f"No run has a worst case yet ({NOT_EVALUATED}); a worst-case column per ε then appears here.")
diverged = [r for r in records if r.get("diverged")]
if diverged:
    st.warning(f"{len(diverged)} run{'s' if len(diverged) > 1 else ''} learned nothing usable (marked in the "
               "'diverged' column; stored all the same, since that is what their settings produce): "
               + "; ".join(f"{run_label(r['objective'], r['run_id'])}: {r['diverged_reason']}" for r in diverged[:3])
               + (f"; and {len(diverged) - 3} more" if len(diverged) > 3 else ""))
# The columns a comparison is read by first; the others on request, so the table fits the page.
FIRST = ["name", "run_id", "objective", "dataset", "model", "seed", "epochs", "clean_acc"]
LATER = ["constants", "adversarial_training", "fine_tuned_from", "diverged", "worst_case_source", "macro_f1", "r_ab",
         "r_ab_ci95", "train_seconds", "overhead_vs_ce_pct", "ce_run_id"]
more = st.multiselect("more columns", LATER, default=["diverged"] if diverged else [], key="runs-columns",
                      help="The table shows the run's name, id, recipe, clean accuracy, worst case per ε, tags and "
                           "notes; add any of these.")
order = FIRST + [key for key, _ in worst] + (["alone_acc", "alone_source"] if attack else []) + more + ["tags", "notes"]
EDITABLE = ("name", "tags", "notes")
edited = st.data_editor(rows, hide_index=True, key="runs-table", column_order=order,
                        disabled=[c for c in rows[0] if c not in EDITABLE], column_config={
    "name": st.column_config.TextColumn("name", help="Your name for the run (kept in the store)", max_chars=200),
    "tags": st.column_config.TextColumn("tags", help="Your tags, e.g. baseline, paper-fig4", max_chars=200),
    "notes": st.column_config.TextColumn("notes", help="Your notes on the run", max_chars=2000),
    "run_id": st.column_config.TextColumn("run", width="small"),
    "adversarial_training": "adversarial training",
    "fine_tuned_from": "fine-tuned from",
    "clean_acc": st.column_config.NumberColumn("clean acc.", format="%.3f"),
    "diverged": st.column_config.CheckboxColumn("diverged", help="test accuracy indistinguishable from chance, or "
                                                "latents that became infinite: see the run's notes"),
    **{key: st.column_config.NumberColumn(f"worst case @ ε {e:g}", format="%.3f",
                                          help="per-sample worst case over every ℓ∞ attack tried: the headline")
       for key, e in worst},
    "worst_case_source": "worst case over",
    "macro_f1": st.column_config.NumberColumn("macro F1", format="%.3f"),
    "r_ab": st.column_config.NumberColumn("r_AB", format="%.2f"),
    "r_ab_ci95": st.column_config.NumberColumn("r_AB ±95 %", format="%.2f"),
    "train_seconds": st.column_config.NumberColumn("train time (s)", format="%.1f"),
    "overhead_vs_ce_pct": st.column_config.NumberColumn("overhead vs CE (%)", format="%+.1f",
                                                        help="(train time / CE twin's train time − 1) × 100"),
    "ce_run_id": "CE twin",
    "alone_acc": st.column_config.NumberColumn(f"{attack} alone @ ε {eps:g} (upper bound)" if attack else
                                               "alone (upper bound)", format="%.3f"),
    "alone_source": "alone: from",
})
changed = [(new, old) for new, old in zip(edited, rows) if any((new.get(k) or "") != (old.get(k) or "")
                                                                 for k in EDITABLE)]
for new, old in changed:  # what the user typed into the name, tags and notes cells
    store.put_note(old["run_id"], {k: new.get(k) or "" for k in EDITABLE})
if changed:
    st.toast(f"Saved the notes on {len(changed)} run{'s' * (len(changed) > 1)}.", icon=":material/save:")
table_downloads(rows, "runs", key="runs-export")

st.subheader("One run")
by_id = {r["run_id"]: r for r in records}
labels = {r["run_id"]: f"{run_label(r['objective'], r['run_id'])} · {r['dataset']} · {r['model']} · "
                       f"{r['settings']['epochs']} ep · seed {r['settings']['seed']}" for r in records}
run_id = st.selectbox("run", list(labels), format_func=labels.get, key="runs-run")
record = by_id[run_id]
left, right, _ = st.columns([1, 1, 4])
left.download_button("checkpoint (.pt)", data=lambda run_id=run_id: store.checkpoint_bytes(run_id),
                     file_name=f"{record['objective']}-{run_id}.pt", mime="application/octet-stream",
                     key="runs-checkpoint", on_click="ignore", icon=":material/download:",
                     help="The model's and objective's state dicts: torch.load(path, weights_only=True).")
if right.button("Delete…", key="runs-delete", icon=":material/delete:"):
    st.session_state["runs-pending-delete"] = run_id
if st.session_state.get("runs-pending-delete") == run_id:
    st.warning(f"Delete {labels[run_id]}? Its checkpoint, latents and cached results go with it. "
               "This cannot be undone.")
    yes, no, _ = st.columns([1, 1, 4])
    if yes.button("Yes, delete", type="primary", key="runs-confirm-delete"):
        store.delete_run(run_id)
        del st.session_state["runs-pending-delete"]
        st.session_state["runs-deleted"] = labels[run_id]
        st.rerun()
    if no.button("Keep it", key="runs-cancel-delete"):
        del st.session_state["runs-pending-delete"]
        st.rerun()
with st.expander("settings and notes"):
    st.json(record["settings"])
    for warning in record.get("warnings", []):
        st.caption(warning)
