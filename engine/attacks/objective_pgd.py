"""ℓ∞ PGD on a value computed from the latents: the defence-aware ("adaptive") attacks.

Several objectives saturate softmax (GCCS gaps ≈ 70, MMC ≈ 111) or are scale-invariant (I-SCE, MAT),
so cross-entropy gradients on their logits vanish and robustness looks better than it is
(../shared/spec/attacks.md, "Adaptive attacks"; Carlini et al. 2019, "On evaluating adversarial
robustness"). These attacks ascend either the objective's own adaptive attack objective or a
scale-free margin on its logits instead.
"""
from __future__ import annotations

import torch
from torchattacks.attack import Attack


class ObjectivePGD(Attack):
    r"""ℓ∞ PGD (Madry et al. 2018, "Towards deep learning models resistant to adversarial attacks")
    that ascends a per-sample value computed from the latents; subclasses say which value.

    Arguments:
        name (str): the attack's name.
        model (LogitsModel): the run's model and objective (``model.model``, ``model.objective``).
        eps (float): maximum perturbation (ℓ∞, pixels in [0, 1]). Default: 8/255.
        alpha (float): step size. Default: 2/255.
        steps (int): number of steps. Default: 10.
        random_start (bool): start at a uniform point of the ε-ball. Default: True.

    Shape:
        images: (N, C, H, W) in [0, 1]; labels: (N,); output: (N, C, H, W) in [0, 1].
    """

    def __init__(self, name: str, model, eps=8 / 255, alpha=2 / 255, steps=10, random_start=True):
        super().__init__(name, model)
        self.eps, self.alpha, self.steps, self.random_start = eps, alpha, steps, random_start
        self.supported_mode = ["default", "targeted"]

    def value(self, x: torch.Tensor, labels: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        """Per-sample value (N,) at inputs x that the attack maximises."""
        raise NotImplementedError

    def begin(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        """Called once per batch with the clean images, before the first step: what ``value`` needs
        of the clean batch (e.g. its latents) is computed here. Default: nothing."""

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        images = images.clone().detach().to(self.device)
        labels = labels.clone().detach().to(self.device)
        target = self.get_target_label(images, labels) if self.targeted else None
        self.begin(images, labels)
        adv = images.clone().detach()
        if self.random_start:
            adv = (adv + torch.empty_like(adv).uniform_(-self.eps, self.eps)).clamp(0, 1).detach()
        for _ in range(self.steps):
            adv.requires_grad = True
            cost = self.value(adv, labels, target).sum()
            grad = torch.autograd.grad(cost, adv)[0]
            adv = adv.detach() + self.alpha * grad.sign()
            adv = (images + (adv - images).clamp(-self.eps, self.eps)).clamp(0, 1).detach()
        return adv


class AdaptivePGD(ObjectivePGD):
    r"""PGD on the objective's adaptive attack objective (GCCS ‖z − μ_T e_y‖², MMC's L^{un,1} / L^{tar,1},
    PCL's joint loss over its supervised layers, ...): what a defence-aware white-box attacker
    maximises (attacks.md, "Adaptive attacks"; MMC App. B.4; PCL Table 4).

    An objective whose adaptive objective needs the intermediate features (PCL) provides
    ``adaptive_objective_features(features, z, y, target)``; it is then fed
    ``model.forward_features(x)``. Otherwise ``adaptive_objective(z, y, target)`` on z = model(x).
    An objective whose ``uses_clean_latents`` is true (MAT trained with BIBO: β·CD(φ(x), φ(x'))) also
    gets ``z_clean=``: the clean batch's latents, computed once per batch and detached (a constant,
    seed-mat.md §2.3); the random start moves the attack off x', where that term's gradient is 0 (P3).

    Arguments:
        model (LogitsModel): the run's model and objective.
        eps (float): maximum perturbation (ℓ∞). Default: 8/255.
        alpha (float): step size. Default: 2/255.
        steps (int): number of steps. Default: 10.
        random_start (bool): start at a uniform point of the ε-ball. Default: True.

    Shape:
        images: (N, C, H, W) in [0, 1]; labels: (N,); output: (N, C, H, W) in [0, 1].
    """

    def __init__(self, model, eps=8 / 255, alpha=2 / 255, steps=10, random_start=True):
        super().__init__("AdaptivePGD", model, eps, alpha, steps, random_start)
        self.z_clean: torch.Tensor | None = None

    def begin(self, images, labels):
        self.z_clean = None
        if getattr(self.model.objective, "uses_clean_latents", False):
            with torch.no_grad():
                self.z_clean = self.model.model(images).detach()

    def value(self, x, labels, target):
        net, objective = self.model.model, self.model.objective
        extra = {} if self.z_clean is None else {"z_clean": self.z_clean}
        if hasattr(objective, "adaptive_objective_features") and hasattr(net, "forward_features"):
            features, z = net.forward_features(x)
            return objective.adaptive_objective_features(features, z, labels, target, **extra)
        return objective.adaptive_objective(net(x), labels, target, **extra)


class CEPGD(ObjectivePGD):
    r"""PGD on the cross-entropy of the objective's logits, as ObjectivePGD (explicit step, optional
    random start): CE(h, y), or −CE(h, t) for a target t. One step of ``alpha = eps`` without random
    start is FGSM. What adversarial training crafts with for ``adv_loss="ce"`` (engine.train).

    Arguments:
        model (LogitsModel): the run's model and objective.
        eps (float): maximum perturbation (ℓ∞). Default: 8/255.
        alpha (float): step size. Default: 2/255.
        steps (int): number of steps. Default: 10.
        random_start (bool): start at a uniform point of the ε-ball. Default: True.

    Shape:
        images: (N, C, H, W) in [0, 1]; labels: (N,); output: (N, C, H, W) in [0, 1].
    """

    def __init__(self, model, eps=8 / 255, alpha=2 / 255, steps=10, random_start=True):
        super().__init__("CEPGD", model, eps, alpha, steps, random_start)

    def value(self, x, labels, target):
        logits = self.get_logits(x)
        if target is None:
            return torch.nn.functional.cross_entropy(logits, labels, reduction="none")
        return -torch.nn.functional.cross_entropy(logits, target, reduction="none")


class MarginPGD(ObjectivePGD):
    r"""PGD on the C&W margin of the objective's logits h (Carlini & Wagner 2017, "Towards evaluating
    the robustness of neural networks"): max_{j≠y} h_j − h_y, or for a target t, h_t − max_{j≠t} h_j.
    Scale-free, so a saturated softmax cannot hide the gradient.

    Arguments:
        model (LogitsModel): the run's model and objective.
        eps (float): maximum perturbation (ℓ∞). Default: 8/255.
        alpha (float): step size. Default: 2/255.
        steps (int): number of steps. Default: 10.
        random_start (bool): start at a uniform point of the ε-ball. Default: True.

    Shape:
        images: (N, C, H, W) in [0, 1]; labels: (N,); output: (N, C, H, W) in [0, 1].
    """

    def __init__(self, model, eps=8 / 255, alpha=2 / 255, steps=10, random_start=True):
        super().__init__("MarginPGD", model, eps, alpha, steps, random_start)

    def value(self, x, labels, target):
        logits = self.get_logits(x)
        cls = labels if target is None else target
        own = logits.gather(1, cls[:, None])[:, 0]
        others = logits.masked_fill(torch.nn.functional.one_hot(cls, logits.shape[1]).bool(), float("-inf"))
        margin = others.max(1).values - own
        return margin if target is None else -margin
