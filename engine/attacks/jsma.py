"""JSMA with a one-pixel saliency map, batched, with ε as the change of each chosen pixel."""
from __future__ import annotations

import torch
from torchattacks.attack import Attack


class JSMA(Attack):
    r"""Jacobian-based saliency map attack (Papernot et al. 2016, "The limitations of deep learning in
    adversarial settings", Eq. 8), the one-pixel variant GCCS runs as JSMA-200 ("200 iterations,
    1-pixel saliency"; its Fig. 4 sweeps ε).

    Every iteration computes, on the logits Z and for the target t, α_i = ∂Z_t/∂x_i and
    β_i = Σ_{j≠t} ∂Z_j/∂x_i, and raises the pixel with the largest saliency α_i·|β_i| among those with
    α_i > 0 and β_i < 0 by ``theta`` (clipped to 1). Each pixel is changed at most once, so ‖δ‖∞ ≤ θ
    and ‖δ‖₀ ≤ steps: in the workbench θ is the swept ε. When no pixel meets both sign conditions
    the pixel with the largest α_i − β_i (linearised gain of Z_t over the rest) is taken instead, so
    the attack does not stall. A sample stops once it is classified as its target.

    torchattacks.JSMA is the pair-of-pixels variant, one image at a time (K backward passes each);
    this one needs two backward passes per iteration for the whole batch.

    Arguments:
        model (nn.Module): returns the logits.
        theta (float): change of each chosen pixel (ℓ∞ budget, pixels in [0, 1]). Default: 1.0.
        steps (int): maximum number of iterations (= pixels changed). Default: 200.

    Shape:
        images: (N, C, H, W) in [0, 1]; labels: (N,); output: (N, C, H, W) in [0, 1].
        Targeted only: without a target mode, the target is (y + 1) mod K.
    """

    def __init__(self, model, theta=1.0, steps=200):
        super().__init__("JSMA", model)
        self.theta, self.steps = theta, steps
        self.supported_mode = ["default", "targeted"]

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        images = images.clone().detach().to(self.device)
        labels = labels.clone().detach().to(self.device)
        n = len(images)
        if self.targeted:
            target = self.get_target_label(images, labels)
        else:
            with torch.no_grad():
                target = (labels + 1) % self.get_logits(images[:1]).shape[1]
        adv = images.clone().flatten(1)
        free = adv < 1  # pixels that can still be raised (the search domain of the paper)
        rows = torch.arange(n, device=adv.device)
        for _ in range(self.steps):
            x = adv.view_as(images).clone().requires_grad_(True)
            logits = self.get_logits(x)
            active = (logits.argmax(1) != target) & free.any(1)
            if not active.any():
                break
            target_logit = logits.gather(1, target[:, None]).sum()
            alpha = torch.autograd.grad(target_logit, x, retain_graph=True)[0].flatten(1)
            beta = torch.autograd.grad(logits.sum(), x)[0].flatten(1) - alpha
            strict = free & (alpha > 0) & (beta < 0)
            saliency = torch.where(strict, alpha * beta.abs(), torch.zeros_like(alpha))
            fallback = torch.where(free, alpha - beta, torch.full_like(alpha, float("-inf")))
            pick = torch.where(strict.any(1), saliency.argmax(1), fallback.argmax(1))
            pick, chosen = pick[active], rows[active]
            adv[chosen, pick] = (images.flatten(1)[chosen, pick] + self.theta).clamp(max=1)
            free[chosen, pick] = False
        return adv.view_as(images).clamp(0, 1).detach()
