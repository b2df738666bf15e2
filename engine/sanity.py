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
    order = sorted(range(len(eps)), key=lambda i: eps[i])
    for a, b in zip(order, order[1:]):
        if accuracy[b] > accuracy[a] + 0.01:
            out.append(f"accuracy rises from {accuracy[a]:.3f} at ε = {eps[a]:g} to {accuracy[b]:.3f} at "
                       f"ε = {eps[b]:g}: a stronger attack should never do worse (gradient masking?)")
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

    out = []
    groups: dict[tuple, dict[str, float]] = {}
    for r in results:
        if r.get("kind") != "accuracy" or r["eps"] == 0 or r["attack"] not in ATTACKS:
            continue
        group = groups.setdefault((r["eps"], r["samples"], r["seed"]), {})
        # several parameter sets of one attack: keep the strongest (lowest accuracy)
        group[r["attack"]] = min(group.get(r["attack"], 1.0), r["accuracy"])
    for (eps, samples, _), acc in sorted(groups.items()):
        where = f"at ε = {eps:g} ({samples} samples)"
        linf = {a: v for a, v in acc.items() if ATTACKS[a].budget == "linf"}
        white = {a: v for a, v in linf.items() if ATTACKS[a].family == "white-box"}
        if "fgsm" in white:
            for a, v in white.items():
                # a targeted attack (TGSM) only has to reach one class: it may honestly do less than FGSM
                if ATTACKS[a].iterative and ATTACKS[a].target == "none" and v > acc["fgsm"] + 0.02:
                    out.append((a, samples, f"{a} ({v:.3f}) is weaker than one-step FGSM ({acc['fgsm']:.3f}) {where}: an "
                                   "iterative attack should not do worse (gradient masking, or a too small step?)"))
        if white:
            strongest = min(white, key=white.get)
            for a, v in linf.items():
                if ATTACKS[a].family == "gradient-free" and v < white[strongest] - 0.02:
                    out.append((a, samples, f"gradient-free {a} ({v:.3f}) is stronger than the best white-box attack "
                                   f"{strongest} ({white[strongest]:.3f}) {where}: the gradients are masked"))
        for a, v in acc.items():
            partner = ATTACKS[a].pairs_with
            if partner in acc and acc[partner] - v > 0.10:
                out.append((partner, samples, f"adaptive {a} ({v:.3f}) is much stronger than standard {partner} "
                                     f"({acc[partner]:.3f}) {where}: the standard attack overstates the robustness"))
    return out
