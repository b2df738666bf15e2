"""The sanity checks of attacks.md that reveal gradient masking (Carlini et al. 2019, "On evaluating
adversarial robustness"): within one sweep, across the attacks of one run, and against the worst case.
"""
from __future__ import annotations

from typing import Any


def sanity_warnings(eps: list[float], accuracy: list[float], attack: str | None = None) -> list[str]:
    """Signs of gradient masking that one sweep can show (attacks.md, after Carlini et al. 2019).

    ``attack``: the registry name; natural corruptions (noise, rotation) are not attacks that should
    win at large budgets and get no warning, and "should reach ~0" applies to ℓ∞ budgets only."""
    from .attacks import ATTACKS

    spec = ATTACKS.get(attack) if attack else None
    if spec is not None and spec.family == "natural":
        return []
    out = []
    if not eps:
        return out
    order = sorted(range(len(eps)), key=lambda i: eps[i])
    rises = [f"{accuracy[a]:.3f} at ε = {eps[a]:g} → {accuracy[b]:.3f} at ε = {eps[b]:g}"
             for a, b in zip(order, order[1:]) if accuracy[b] > accuracy[a] + 0.01]
    if rises:
        out.append(f"accuracy rises with ε ({'; '.join(rises)}): a stronger attack should never do worse "
                   "(gradient masking?)")
    big = order[-1]
    if (spec is None or spec.budget == "linf") and eps[big] >= 0.3 and accuracy[big] > 0.1:
        out.append(f"accuracy is still {accuracy[big]:.3f} at ε = {eps[big]:g}: at such ε an attack should reach "
                   "~0 (gradient masking, or too few steps?)")
    return out


def cross_attack_warnings(results: list[dict[str, Any]]) -> list[tuple[str, int, str]]:
    """The sanity checks of attacks.md that compare attacks on one run (Carlini et al. 2019), from its
    cached accuracy results; only results on the same samples, seed and ε are compared:
    an untargeted iterative attack weaker than FGSM; a gradient-free attack stronger than the white-box ones;
    the adaptive attack much (> 0.10) stronger than the standard attack it is paired with.
    Returns (attack whose chart the warning belongs to, samples, message) triples.
    """
    from .attacks import ATTACKS

    groups: dict[tuple, dict[str, float]] = {}
    for r in results:
        if r.get("kind") != "accuracy" or r["eps"] == 0 or r["attack"] not in ATTACKS:
            continue
        group = groups.setdefault((r["eps"], r["samples"], r["seed"]), {})
        # several parameter sets of one attack: keep the strongest (lowest accuracy)
        group[r["attack"]] = min(group.get(r["attack"], 1.0), r["accuracy"])
    # one finding per (chart, samples, finding, attacks), its ε collected: one line, not one per ε
    found: dict[tuple, list[str]] = {}
    for (eps, samples, _), acc in sorted(groups.items()):
        linf = {a: v for a, v in acc.items() if ATTACKS[a].budget == "linf"}
        white = {a: v for a, v in linf.items() if ATTACKS[a].family == "white-box"}
        if "fgsm" in white:
            for a, v in white.items():
                # a targeted attack (TGSM) only has to reach one class: it may honestly do less than FGSM
                if ATTACKS[a].iterative and ATTACKS[a].target == "none" and v > acc["fgsm"] + 0.02:
                    found.setdefault((a, samples, "fgsm", a, "fgsm"), []).append(
                        f"{v:.3f} vs {acc['fgsm']:.3f} at ε = {eps:g}")
        if white:
            strongest = min(white, key=white.get)
            for a, v in linf.items():
                if ATTACKS[a].family == "gradient-free" and v < white[strongest] - 0.02:
                    found.setdefault((a, samples, "free", a, "white-box"), []).append(
                        f"{v:.3f} vs {strongest} {white[strongest]:.3f} at ε = {eps:g}")
        for a, v in acc.items():
            partner = ATTACKS[a].pairs_with
            if partner in acc and acc[partner] - v > 0.10:
                found.setdefault((partner, samples, "adaptive", a, partner), []).append(
                    f"{v:.3f} vs {acc[partner]:.3f} at ε = {eps:g}")
    out = []
    for (chart, samples, finding, a, b), where in found.items():
        at = f"({'; '.join(where)}; {samples} samples)"
        if finding == "fgsm":
            message = (f"{a} is weaker than one-step FGSM {at}: an iterative attack should not do worse "
                       "(gradient masking, or a too small step?)")
        elif finding == "free":
            message = f"gradient-free {a} is stronger than the best white-box attack {at}: the gradients are masked"
        else:
            message = (f"adaptive {a} is much stronger than standard {b} {at}: the standard attack overstates "
                       "the robustness")
        out.append((chart, samples, message))
    return out


def _where(eps: list[float], grid: list[float]) -> str:
    """ε values as a reader wants them: "ε ≥ 0.1" when they are the top of the grid, else a list."""
    eps = sorted(eps)
    top = [e for e in sorted(grid) if e >= eps[0]]
    if len(eps) > 1 and eps == top:
        return f"ε ≥ {eps[0]:g}"
    return "ε = " + ", ".join(f"{e:g}" for e in eps)


def worst_case_warnings(eps: list[float], worst: list[float], alone: dict[str, dict[float, float]],
                        objective: str = "") -> list[str]:
    """The checks of attacks.md on one run's worst case, one line per finding over the whole ε grid:
    a single attack more than 5 points above the worst case (it overstates the robustness); the
    adaptive attack weaker than CE-PGD, APGD-CE or margin PGD (the objective's adaptive loss is not this
    model's strongest attack); the worst case not near 0 at ε ≥ 0.3 (ℓ∞).

    ``eps`` / ``worst``: the worst case per ε; ``alone``: {attack: {ε: its accuracy alone}}."""
    out = []
    if not eps:
        return out
    at = dict(zip(eps, worst))
    name = objective.upper() or "this run"
    for attack, curve in alone.items():
        gaps = {e: a - at[e] for e, a in curve.items() if e in at and e > 0 and a - at[e] > 0.05}
        if gaps:
            e_max = max(gaps, key=gaps.get)
            where = "" if len(gaps) == 1 else f"at {_where(list(gaps), [e for e in eps if e > 0])}; "
            out.append(f"{attack} alone overstates {name}'s robustness by up to {100 * gaps[e_max]:.0f} points "
                       f"({where}at ε = {e_max:g} it reads {curve[e_max]:.3f}, the worst case {at[e_max]:.3f}): "
                       "one attack is an upper bound")
    adaptive = next((a for a in alone if a.split(" ")[0] == "adaptive-pgd"), None)
    if adaptive is not None:
        weaker = []
        for other in alone:
            if other.split(" ")[0] in ("pgd", "apgd-ce", "margin-pgd"):
                es = [e for e, a in alone[adaptive].items() if e > 0 and e in alone[other]
                      and a > alone[other][e] + 0.02]
                if es:
                    e = max(es, key=lambda e: alone[adaptive][e] - alone[other][e])
                    weaker.append(f"{other} ({alone[adaptive][e]:.3f} vs {alone[other][e]:.3f} at ε = {e:g})")
        if weaker:
            out.append(f"{adaptive} is weaker than {' and '.join(weaker)}: this adaptive objective is not this "
                       "model's strongest attack (the worst case does not rely on it)")
    big = max(eps)
    if big >= 0.3 and at[big] > 0.1:
        out.append(f"the worst case is still {at[big]:.3f} at ε = {big:g}: at such ε an ℓ∞ attack should reach ~0 "
                   "(gradient masking, or too weak an ensemble?)")
    return out
