"""The attack registry: torchattacks' attacks plus what it lacks, in torchattacks' own shape.

Every attack is built for one trained run as ``build_attack(name, model, objective, eps, **params)``
and called as ``attack(images, labels) -> adversarial images`` (images (N, C, H, W) in [0, 1]).
Attacks see the objective's logits (``LogitsModel``); the adaptive ones use the objective itself
(its adaptive attack objective, or a margin on its logits), because several objectives saturate
softmax and starve CE gradients (../shared/spec/attacks.md, "Adaptive attacks").

What the swept number means differs by attack (``AttackSpec.budget``, ``BUDGETS``): an ℓ∞ ε, SimBA's
ℓ2 step, a noise σ, a rotation angle, or nothing for the minimal attacks (DeepFool, C&W), whose
result is a perturbation size (engine.measures), not an accuracy at ε. Transfer attacks need two
runs and live in engine.measures too (``transfer_accuracy``, ``transfer_matrix``).

Library: FGSM, PGD, BIM, MIM (MIFGSM), SPSA, Square, APGD and Gaussian noise (GN) are torchattacks'.
Workbench (one file each): AdaptivePGD / MarginPGD (objective_pgd.py), JSMA (one-pixel, batched),
DeepFool (batched), CWL2Search (C&W ℓ2 with the binary search), SimBA, RandomRotation, and AutoAttack
(torchattacks' ensemble with its iteration and query counts exposed).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torchattacks
from torch import nn
from torchattacks.attack import Attack

from ..objectives import ConfigError, Objective, Param


class LogitsModel(nn.Module):
    """A trained model and its objective as one module whose output is the objective's logits
    (what library attacks differentiate: MMC −½‖z − μ‖², MAT z·μᵀ, I-SCE its test-time logits)."""

    def __init__(self, model: nn.Module, objective: Objective):
        super().__init__()
        self.model, self.objective = model, objective

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.objective.logits(self.model(x))


# The workbench's own attacks (after LogitsModel: they take one as their model).
from .autoattack import AutoAttack  # noqa: E402
from .cw_search import CWL2Search  # noqa: E402
from .deepfool import DeepFool  # noqa: E402
from .jsma import JSMA  # noqa: E402
from .objective_pgd import AdaptivePGD, MarginPGD, ObjectivePGD  # noqa: E402
from .rotation import RandomRotation  # noqa: E402
from .simba import SimBA  # noqa: E402


# --- budgets: what the swept number means ----------------------------------------------------------
@dataclass(frozen=True)
class Budget:
    """The swept number of an attack: its axis label, allowed range and default grid (MNIST-like)."""

    label: str
    minimum: float
    maximum: float
    grid: tuple[float, ...]
    allowed: str  # how error messages say what is allowed


BUDGETS: dict[str, Budget] = {
    "linf": Budget("ε (ℓ∞, pixels in [0, 1])", 0.0, 1.0, (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3),
                   "numbers in [0, 1] (ℓ∞ radius in pixel units)"),
    "l2": Budget("ε (ℓ2 length of each SimBA step, pixels in [0, 1])", 0.0, 10.0, (0.0, 0.5, 1.0, 1.5),
                 "numbers in [0, 10] (ℓ2 step length in pixel units)"),
    "sigma": Budget("σ (std of Gaussian noise, pixels in [0, 1])", 0.0, 1.0, (0.0, 0.05, 0.1, 0.2, 0.3, 0.5),
                    "numbers in [0, 1] (noise standard deviation in pixel units)"),
    "degrees": Budget("largest rotation angle (degrees)", 0.0, 180.0, (0.0, 10.0, 20.0, 30.0, 45.0, 60.0, 90.0),
                      "numbers in [0, 180] (degrees)"),
    "none": Budget("none: a minimal attack, measured by the size of its perturbation", 0.0, 0.0, (),
                   "empty (a minimal attack has no budget; its result is a perturbation size, see engine.measures)"),
}

FAMILIES = ("white-box", "gradient-free", "natural", "minimal")


@dataclass(frozen=True)
class AttackSpec:
    """One entry of the registry: how to build it, its parameters (paper defaults), targeting, and
    what the UI and the cross-attack sanity checks need to know about it.

    build(model: LogitsModel, eps, **params) -> Attack. target: "none", "next" ((y + 1) mod K, GCCS's
    TGSM) or "random" (uniform over y_t ≠ y). budget: a key of BUDGETS. family: one of FAMILIES.
    iterative: more than one gradient step or query. pairs_with: the standard attack an adaptive one
    is charted against. min_classes: the smallest K the attack works for (DLR needs 3 or 4 logits).
    """

    build: Callable[..., Attack]
    params: tuple[Param, ...]
    title: str
    target: str = "none"
    budget: str = "linf"
    family: str = "white-box"
    iterative: bool = True
    pairs_with: str | None = None
    min_classes: int = 2


def _steps(default: int, note: str = "number of iterations") -> Param:
    return Param("steps", default, note, minimum=1, maximum=10_000)


def _alpha(note: str) -> Param:
    return Param("alpha", 0.0, f"step size in pixels; 0 = 2.5·ε/steps ({note})", minimum=0.0, maximum=1.0)


def step_size(alpha: float, eps: float, steps: int) -> float:
    """PGD's step: ``alpha`` when given, else 2.5·ε/steps (Madry et al. 2018), which can cross the
    ε-ball from any start. A fixed step would cap the attack at steps·α: PGD-5 with α = 0.01 could
    never move a pixel by more than 0.05, however large ε, and look weaker than one-step FGSM."""
    return alpha if alpha > 0 else 2.5 * eps / steps


def _queries(default: int, note: str) -> Param:
    return Param("queries", default, note, minimum=1, maximum=1_000_000)


def _restarts(default: int = 1) -> Param:
    """Random restarts: restart r attacks only the samples no earlier restart broke, with a stream of
    its own, so a sample counts as robust only if it survives every restart (the per-sample best)."""
    return Param("restarts", default, "random restarts; a sample is broken if any restart breaks it",
                 minimum=1, maximum=100)


ATTACKS: dict[str, AttackSpec] = {
    "fgsm": AttackSpec(lambda m, eps: torchattacks.FGSM(m, eps=eps), (),
                       "FGSM: one signed-gradient step of CE on the logits (GCCS, PCL)", iterative=False),
    "pgd": AttackSpec(lambda m, eps, steps, alpha: torchattacks.PGD(m, eps=eps, alpha=step_size(alpha, eps, steps),
                                                                    steps=steps),
                      (_steps(5), _alpha("GCCS uses PGD-5 and gives no step"), _restarts()),
                      "PGD on CE of the logits, random start (GCCS: PGD-5)"),
    "pgd-targeted": AttackSpec(lambda m, eps, steps, alpha: torchattacks.PGD(m, eps=eps,
                                                                             alpha=step_size(alpha, eps, steps),
                                                                             steps=steps),
                               (_steps(10, "number of iterations (MMC: PGD-10 and PGD-50)"),
                                _alpha("MMC: 2/255 on CIFAR"), _restarts()),
                               "targeted PGD to a random y_t ≠ y, accuracy against y (MMC: PGD^tar_10)",
                               target="random"),
    "bim": AttackSpec(lambda m, eps, steps: torchattacks.BIM(m, eps=eps, alpha=eps / steps, steps=steps),
                      (_steps(10),), "BIM / I-FGSM: steps of ε/steps (PCL: 10 steps of ε/10)"),
    "mim": AttackSpec(lambda m, eps, steps, decay: torchattacks.MIFGSM(m, eps=eps, alpha=eps / steps, steps=steps,
                                                                      decay=decay),
                      (_steps(10), Param("decay", 1.0, "momentum decay (PCL: 1.0)", minimum=0.0)),
                      "MIM: momentum iterative FGSM, steps of ε/steps (PCL: 10 steps, decay 1.0)"),
    "tgsm": AttackSpec(lambda m, eps, steps: torchattacks.BIM(m, eps=eps, alpha=eps / steps, steps=steps),
                       (_steps(5),), "TGSM-5: iterative targeted FGSM to (y + 1) mod K (GCCS)", target="next"),
    "jsma": AttackSpec(lambda m, eps, **p: JSMA(m, theta=eps, **p),
                       (_steps(200, "iterations = most pixels changed (GCCS: JSMA-200)"),),
                       "JSMA-200: one-pixel saliency map, each chosen pixel raised by ε, random target (GCCS)",
                       target="random"),
    "deepfool": AttackSpec(lambda m, eps, **p: DeepFool(m, **p),
                           (_steps(50, "maximum iterations (DeepFool's code: 50)"),
                            Param("overshoot", 0.02, "the total perturbation is scaled by 1 + overshoot "
                                  "(DeepFool: 0.02)", minimum=0.0, maximum=1.0),
                            Param("candidates", 10, "classes tried besides y, by clean logit (DeepFool: 10)",
                                  minimum=1, maximum=1000)),
                           "DeepFool: minimal ℓ2 perturbation; report ρ = mean ‖r̂‖₂/‖x‖₂ (GCCS, I-SCE)",
                           budget="none", family="minimal"),
    "cw": AttackSpec(lambda m, eps, **p: CWL2Search(m, **p),  # targeted: build_attack sets the mode
                     (Param("search_steps", 9, "binary-search steps over c (MMC: 9)", minimum=1, maximum=50),
                      Param("initial_const", 0.01, "initial c (MMC: 0.01; PCL: 10 MNIST, 0.1 CIFAR)",
                            minimum=0.0, exclusive_minimum=True, maximum=1e10),
                      _steps(1000, "Adam iterations per c (MMC, PCL: 1000)"),
                      Param("lr", 0.005, "Adam learning rate (MMC: 0.005; PCL: 0.01)", minimum=0.0,
                            exclusive_minimum=True, maximum=10.0),
                      Param("kappa", 0.0, "confidence κ (MMC: 0)", minimum=0.0),
                      Param("targeted", False, "targeted to a random y_t ≠ y (MMC: C&W^tar) or untargeted")),
                     "C&W ℓ2 with binary search over c: report mean ℓ2 and success rate (MMC: 9 × 1000, c₀ 0.01, "
                     "lr 0.005)", budget="none", family="minimal"),
    "spsa": AttackSpec(lambda m, eps, iterations, samples, lr, delta:
                       torchattacks.SPSA(m, eps=eps, nb_iter=iterations, nb_sample=samples, lr=lr, delta=delta,
                                         max_batch_size=min(samples, 32)),
                       (Param("iterations", 10, "iterations (MMC: SPSA_10; GCCS working point IT = 50)",
                              minimum=1, maximum=10_000),
                        Param("samples", 128, "perturbation samples per gradient estimate (MMC: 128; "
                              "GCCS BS = 1024)", minimum=1, maximum=100_000),
                        Param("lr", 0.01, "Adam learning rate (MMC: 0.01)", minimum=0.0, exclusive_minimum=True,
                              maximum=1.0),
                        Param("delta", 0.01, "finite-difference step δ (MMC: 0.01)", minimum=0.0,
                              exclusive_minimum=True, maximum=1.0)),
                       "SPSA on the logit margin (Uesato et al. 2018; MMC: 10 it., 128 samples, lr 0.01, δ 0.01)",
                       family="gradient-free"),
    "square": AttackSpec(lambda m, eps, queries: torchattacks.Square(m, norm="Linf", eps=eps, n_queries=queries,
                                                                     n_restarts=1, p_init=0.8, loss="margin", seed=0),
                         (_queries(5000, "query budget per image (AutoAttack: 5000)"), _restarts()),
                         "Square attack: random square updates on the logit margin (Andriushchenko et al. 2020)",
                         family="gradient-free"),
    "apgd-ce": AttackSpec(lambda m, eps, steps: torchattacks.APGD(m, norm="Linf", eps=eps, steps=steps, n_restarts=1,
                                                                  loss="ce", seed=0),
                          (_steps(100, "iterations (AutoAttack: 100)"), _restarts()),
                          "APGD-CE: step-size-free PGD on CE (Croce & Hein 2020)"),
    "apgd-dlr": AttackSpec(lambda m, eps, steps: torchattacks.APGD(m, norm="Linf", eps=eps, steps=steps, n_restarts=1,
                                                                   loss="dlr", seed=0),
                           (_steps(100, "iterations (AutoAttack: 100)"), _restarts()),
                           "APGD-DLR: step-size-free PGD on the scale-invariant DLR loss (Croce & Hein 2020)",
                           min_classes=3),
    "apgd-t": AttackSpec(lambda m, eps, steps: torchattacks.APGDT(m, norm="Linf", eps=eps, steps=steps, n_restarts=1,
                                                                  n_classes=m.objective.num_classes, seed=0),
                         (_steps(10, "iterations per target class (torchattacks' AutoAttack: 10; the paper: 100)"),
                          _restarts()),
                         "APGD-T: APGD on the targeted DLR loss, every other class in turn (AutoAttack's second member)",
                         min_classes=4),
    "fab-t": AttackSpec(lambda m, eps, steps: torchattacks.FAB(m, norm="Linf", eps=eps, steps=steps, n_restarts=1,
                                                               multi_targeted=True, n_classes=m.objective.num_classes,
                                                               seed=0),
                        (_steps(10, "iterations per target class (torchattacks' AutoAttack: 10; the paper: 100)"),
                         _restarts()),
                        "FAB-T: minimal-norm boundary attack to every other class, kept when within ε (AutoAttack's "
                        "third member)", min_classes=3),
    "autoattack": AttackSpec(lambda m, eps, **p: AutoAttack(m, eps=eps, n_classes=m.objective.num_classes, **p),
                             (_steps(100, "APGD / FAB iterations (AutoAttack: 100)"),
                              _queries(5000, "Square's query budget (AutoAttack: 5000)")),
                             "AutoAttack standard: APGD-CE, APGD-T, FAB-T, Square (Croce & Hein 2020)",
                             min_classes=4),
    "adaptive-pgd": AttackSpec(lambda m, eps, steps, alpha: AdaptivePGD(m, eps=eps, alpha=step_size(alpha, eps, steps),
                                                                        steps=steps),
                               (_steps(10), _alpha("as pgd, so the two are comparable"), _restarts()),
                               "PGD on the objective's adaptive attack objective (MMC App. B.4, PCL Table 4)",
                               pairs_with="pgd"),
    "margin-pgd": AttackSpec(lambda m, eps, steps, alpha: MarginPGD(m, eps=eps, alpha=step_size(alpha, eps, steps),
                                                                    steps=steps),
                             (_steps(10), _alpha("as pgd, so the two are comparable"), _restarts()),
                             "PGD on the C&W margin of the logits (scale-free)",
                             pairs_with="pgd"),
    "simba": AttackSpec(lambda m, eps, **p: SimBA(m, eps=eps, **p),
                        (_queries(300, "queries per image (I-SCE: 300 MNIST, 500 CIFAR-10)"),
                         Param("score", "margin", "what each query must lower: the logit margin, or the true "
                               "class's probability (SimBA's own; saturates under GCCS/MMC)",
                               choices=("margin", "probability"))),
                        "SimBA-pixel: random pixel steps of ±ε kept when they lower the score (I-SCE: ε 0.5/1/1.5)",
                        budget="l2", family="gradient-free"),
    "gaussian-noise": AttackSpec(lambda m, eps: torchattacks.GN(m, std=eps), (),
                                 "Gaussian noise of std σ, clipped to [0, 1] (MMC: σ = 0.05)",
                                 budget="sigma", family="natural", iterative=False),
    "rotation": AttackSpec(lambda m, eps: RandomRotation(m, degrees=eps), (),
                           "random rotation, angle uniform in ±degrees (MMC: ±30°)",
                           budget="degrees", family="natural", iterative=False),
}


def attack_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """The attack's parameters, validated, with the defaults filled in (errors name the field)."""
    if name not in ATTACKS:
        raise ConfigError(f"attack must be one of {', '.join(ATTACKS)}; got {name!r}")
    known = {p.name: p for p in ATTACKS[name].params}
    unknown = sorted(set(params) - set(known))
    if unknown:
        allowed = ", ".join(known) or "none"
        raise ConfigError(f"unknown parameter {unknown[0]!r} for attack {name!r}; allowed: {allowed}")
    return {p.name: p.validate(params.get(p.name, p.default), name) for p in ATTACKS[name].params}


def single_run_params(name: str, params: dict[str, Any], what: str) -> dict[str, Any]:
    """``attack_params`` for work that shows one run of the attack (latents under attack, the gallery):
    more than one restart is refused rather than ignored."""
    values = attack_params(name, params)
    if values.get("restarts", 1) > 1:
        raise ConfigError(f"{name}.restarts: {what} shows one run of the attack, so restarts must be 1; "
                          f"got {values['restarts']} (robust accuracy takes restarts)")
    return values


def budget_of(name: str) -> Budget:
    """What the swept number of attack ``name`` means (label, range, default MNIST-like grid)."""
    if name not in ATTACKS:
        raise ConfigError(f"attack must be one of {', '.join(ATTACKS)}; got {name!r}")
    return BUDGETS[ATTACKS[name].budget]


def validate_budget(name: str, values) -> list[float]:
    """The swept values of attack ``name`` as floats, or ConfigError naming the allowed range."""
    budget = budget_of(name)
    values = list(values)
    problem = f"eps must be {budget.allowed} for attack {name}; got {values!r}"
    if ATTACKS[name].budget == "none":
        if values:
            raise ConfigError(problem)
        return []
    out = []
    for v in values:
        try:
            number = float(v) if not isinstance(v, bool) else math.nan
        except (TypeError, ValueError):
            raise ConfigError(problem) from None
        if not budget.minimum <= number <= budget.maximum:  # also rejects NaN
            raise ConfigError(problem)
        out.append(number)
    return out


def build_attack(name: str, model: nn.Module, objective: Objective, eps: float, **params) -> Attack:
    """The attack ``name`` against one run (model in eval mode; robust accuracy is always measured
    against the true label, also for targeted attacks). ``eps`` is ignored by minimal attacks."""
    values = attack_params(name, params)  # raises for an unknown name
    spec = ATTACKS[name]
    if spec.budget != "none":
        eps = validate_budget(name, [eps])[0]
    if objective.num_classes < spec.min_classes:
        raise ConfigError(f"attack {name} needs at least {spec.min_classes} classes (its DLR loss needs the "
                          f"{spec.min_classes} largest logits); got {objective.num_classes}")
    targeted = values.pop("targeted", False)
    values.pop("restarts", None)  # restarts are the caller's loop (engine.robustness), one attack a restart
    attack = spec.build(LogitsModel(model, objective).eval(), eps=eps, **values)
    if spec.target == "next":
        k = objective.num_classes
        attack.set_mode_targeted_by_function(lambda images, labels: (labels + 1) % k, quiet=True)
    elif spec.target == "random" or targeted:
        attack.set_mode_targeted_random(quiet=True)
    return attack


__all__ = ["ATTACKS", "BUDGETS", "FAMILIES", "AdaptivePGD", "AttackSpec", "AutoAttack", "Budget", "CWL2Search",
           "DeepFool", "JSMA", "LogitsModel", "MarginPGD", "ObjectivePGD", "RandomRotation", "SimBA",
           "attack_params", "budget_of", "build_attack", "validate_budget"]
