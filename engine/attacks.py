"""The attack registry: torchattacks' attacks plus what it lacks, in torchattacks' own shape.

Every attack is built for one trained run as ``build_attack(name, model, objective, eps, **params)``
and called as ``attack(images, labels) -> adversarial images`` (images in [0, 1]). Library attacks
see the objective's logits (``LogitsModel``); the workbench's own attacks subclass
``torchattacks.attack.Attack`` and use the objective itself (its adaptive attack objective, or a
margin on its logits), because several objectives saturate softmax and starve CE gradients
(../shared/spec/attacks.md, "Adaptive attacks").

Implemented so far: FGSM, PGD, BIM, MIM, TGSM (targeted to (y + 1) mod K), PGD on the objective's
adaptive objective, and a margin (C&W-style) PGD. The rest of the catalogue is issue 4's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torchattacks
from torch import nn
from torchattacks.attack import Attack

from .objectives import ConfigError, Objective, Param


class LogitsModel(nn.Module):
    """A trained model and its objective as one module whose output is the objective's logits
    (what library attacks differentiate: MMC −½‖z − μ‖², MAT z·μᵀ, I-SCE its test-time logits)."""

    def __init__(self, model: nn.Module, objective: Objective):
        super().__init__()
        self.model, self.objective = model, objective

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.objective.logits(self.model(x))


class _ObjectivePGD(Attack):
    """ℓ∞ PGD that ascends a per-sample value computed from the latents (base of the two below).

    Arguments:
        model (LogitsModel): the run's model and objective.
        eps (float): maximum perturbation (ℓ∞, pixels in [0, 1]). Default: 8/255.
        alpha (float): step size. Default: 2/255.
        steps (int): number of steps. Default: 10.
        random_start (bool): start at a uniform point of the ε-ball. Default: True.

    Shape:
        images: (N, C, H, W) in [0, 1]; labels: (N,); output: (N, C, H, W) in [0, 1].
    """

    def __init__(self, name: str, model: LogitsModel, eps=8 / 255, alpha=2 / 255, steps=10, random_start=True):
        super().__init__(name, model)
        self.eps, self.alpha, self.steps, self.random_start = eps, alpha, steps, random_start
        self.supported_mode = ["default", "targeted"]

    def value(self, z: torch.Tensor, labels: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        images = images.clone().detach().to(self.device)
        labels = labels.clone().detach().to(self.device)
        target = self.get_target_label(images, labels) if self.targeted else None
        adv = images.clone().detach()
        if self.random_start:
            adv = (adv + torch.empty_like(adv).uniform_(-self.eps, self.eps)).clamp(0, 1).detach()
        for _ in range(self.steps):
            adv.requires_grad = True
            z = self.model.model(adv)
            cost = self.value(z, labels, target).sum()
            grad = torch.autograd.grad(cost, adv)[0]
            adv = adv.detach() + self.alpha * grad.sign()
            adv = (images + (adv - images).clamp(-self.eps, self.eps)).clamp(0, 1).detach()
        return adv


class AdaptivePGD(_ObjectivePGD):
    """PGD on the objective's adaptive attack objective (GCCS ‖z − μ_T e_y‖², MMC's L^{un,·}, ...):
    what a defence-aware white-box attacker maximises (attacks.md, "Adaptive attacks")."""

    def __init__(self, model, eps=8 / 255, alpha=2 / 255, steps=10, random_start=True):
        super().__init__("AdaptivePGD", model, eps, alpha, steps, random_start)

    def value(self, z, labels, target):
        return self.model.objective.adaptive_objective(z, labels, target)


class MarginPGD(_ObjectivePGD):
    """PGD on the C&W margin of the objective's logits, max_{j≠y} h_j − h_y (targeted: h_t − max_{j≠t} h_j):
    scale-free, so a saturated softmax cannot hide the gradient."""

    def __init__(self, model, eps=8 / 255, alpha=2 / 255, steps=10, random_start=True):
        super().__init__("MarginPGD", model, eps, alpha, steps, random_start)

    def value(self, z, labels, target):
        logits = self.model.objective.logits(z)
        cls = labels if target is None else target
        own = logits.gather(1, cls[:, None])[:, 0]
        others = logits.masked_fill(torch.nn.functional.one_hot(cls, logits.shape[1]).bool(), float("-inf"))
        margin = others.max(1).values - own
        return margin if target is None else -margin


@dataclass(frozen=True)
class AttackSpec:
    """One entry of the registry: how to build it, its parameters (paper defaults), targeting."""

    build: Callable[..., Attack]
    params: tuple[Param, ...]
    title: str
    target: str = "none"  # "none", or "next": targets (y + 1) mod K as GCCS's TGSM


def _steps(default: int) -> Param:
    return Param("steps", default, "number of iterations", minimum=1, maximum=10_000)


def _alpha(default: float, note: str) -> Param:
    return Param("alpha", default, f"step size in pixels ({note})", minimum=0.0, maximum=1.0, exclusive_minimum=True)


ATTACKS: dict[str, AttackSpec] = {
    "fgsm": AttackSpec(lambda m, eps: torchattacks.FGSM(m, eps=eps), (), "FGSM (one step)"),
    "pgd": AttackSpec(lambda m, eps, steps, alpha: torchattacks.PGD(m, eps=eps, alpha=alpha, steps=steps),
                      (_steps(5), _alpha(0.01, "GCCS uses PGD-5")), "PGD on CE of the logits (random start)"),
    "bim": AttackSpec(lambda m, eps, steps: torchattacks.BIM(m, eps=eps, alpha=eps / steps, steps=steps),
                      (_steps(10),), "BIM / I-FGSM (steps of ε/steps, PCL)"),
    "mim": AttackSpec(lambda m, eps, steps, decay: torchattacks.MIFGSM(m, eps=eps, alpha=eps / steps, steps=steps,
                                                                      decay=decay),
                      (_steps(10), Param("decay", 1.0, "momentum decay (PCL: 1.0)", minimum=0.0)),
                      "MIM (momentum, steps of ε/steps)"),
    "tgsm": AttackSpec(lambda m, eps, steps: torchattacks.BIM(m, eps=eps, alpha=eps / steps, steps=steps),
                       (_steps(5),), "TGSM: iterative targeted FGSM to (y + 1) mod K (GCCS)", target="next"),
    "adaptive-pgd": AttackSpec(lambda m, eps, steps, alpha: AdaptivePGD(m, eps=eps, alpha=alpha, steps=steps),
                               (_steps(10), _alpha(0.01, "")), "PGD on the objective's adaptive objective"),
    "margin-pgd": AttackSpec(lambda m, eps, steps, alpha: MarginPGD(m, eps=eps, alpha=alpha, steps=steps),
                             (_steps(10), _alpha(0.01, "")), "PGD on the C&W margin of the logits"),
}


def attack_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """The attack's parameters, validated, with the defaults filled in (errors name the field)."""
    if name not in ATTACKS:
        raise ConfigError(f"attack must be one of {', '.join(ATTACKS)}; got {name!r}")
    known = {p.name: p for p in ATTACKS[name].params}
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ConfigError(f"unknown parameter {unknown[0]!r} for attack {name!r}; allowed: {', '.join(known) or 'none'}")
    return {p.name: p.validate(params.get(p.name, p.default), name) for p in ATTACKS[name].params}


def build_attack(name: str, model: nn.Module, objective: Objective, eps: float, **params) -> Attack:
    """The attack ``name`` against one run (model in eval mode; robust accuracy is always measured
    against the true label, also for targeted attacks)."""
    spec = ATTACKS[name]
    values = attack_params(name, params)
    attack = spec.build(LogitsModel(model, objective).eval(), eps=eps, **values)
    if spec.target == "next":
        k = objective.num_classes
        attack.set_mode_targeted_by_function(lambda images, labels: (labels + 1) % k)
    return attack
