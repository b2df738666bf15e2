"""AutoAttack with its iteration and query counts exposed (torchattacks.AutoAttack fixes them)."""
from __future__ import annotations

from torchattacks import APGD, APGDT, FAB, MultiAttack, Square
from torchattacks.attack import Attack


class AutoAttack(Attack):
    r"""AutoAttack, standard version (Croce & Hein 2020, "Reliable evaluation of adversarial robustness
    with an ensemble of diverse parameter-free attacks"): APGD-CE, then APGD-T (targeted DLR, every
    other class as target), FAB-T and Square, each run on the samples the previous ones left
    correctly classified; a sample counts as broken by the first that succeeds (within ε).

    torchattacks.AutoAttack builds the same ensemble with torchattacks' default 10 APGD/FAB steps; the
    paper uses 100, and the workbench needs fewer for quick checks, so both counts are arguments.

    Arguments:
        model (nn.Module): returns the logits.
        eps (float): maximum perturbation (ℓ∞). Default: 8/255.
        steps (int): iterations of APGD-CE, APGD-T (per target) and FAB-T (per target). Default: 100.
        queries (int): Square's query budget. Default: 5000.
        n_classes (int): number of classes K (APGD-T and FAB-T target the K − 1 others). Default: 10.
        seed (int): seed of the random starts (each member reseeds torch's generator). Default: 0.

    Shape:
        images: (N, C, H, W) in [0, 1]; labels: (N,); output: (N, C, H, W) in [0, 1].
    """

    def __init__(self, model, eps=8 / 255, steps=100, queries=5000, n_classes=10, seed=0):
        super().__init__("AutoAttack", model)
        self.eps, self.steps, self.queries, self.n_classes, self.seed = eps, steps, queries, n_classes, seed
        self.supported_mode = ["default"]
        self._ensemble = MultiAttack([
            APGD(model, norm="Linf", eps=eps, steps=steps, n_restarts=1, loss="ce", seed=seed),
            APGDT(model, norm="Linf", eps=eps, steps=steps, n_restarts=1, n_classes=n_classes, seed=seed),
            FAB(model, norm="Linf", eps=eps, steps=steps, n_restarts=1, multi_targeted=True,
                n_classes=n_classes, seed=seed),
            Square(model, norm="Linf", eps=eps, n_queries=queries, n_restarts=1, seed=seed),
        ])

    def forward(self, images, labels):
        return self._ensemble(images, labels)
