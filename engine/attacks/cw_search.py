"""Carlini & Wagner ℓ2 with the binary search over c that torchattacks.CW leaves out."""
from __future__ import annotations

import torch
from torchattacks.attack import Attack


class CWL2Search(Attack):
    r"""C&W ℓ2 (Carlini & Wagner 2017, "Towards evaluating the robustness of neural networks", §V.A)
    with the binary search over the constant c of the authors' code; MMC's setting (9 search steps,
    c₀ = 0.01, 1000 iterations, lr 0.005) by default.

    For each sample, minimise over w with Adam ‖x' − x‖₂² + c·f(x'), x' = ½(tanh w + 1) ∈ [0, 1]:
        untargeted  f = max(Z_y − max_{j≠y} Z_j, −κ);   targeted  f = max(max_{j≠t} Z_j − Z_t, −κ),
    on the logits Z the model returns (for an objective: its logits, so MMC's margin on
    −½‖z − μ_l‖² is its adaptive C&W objective L^{·,2}, seed-mmc.md §4.2). After each search step c
    moves to the midpoint of the largest c that failed and the smallest that succeeded; while none
    has succeeded it is multiplied by 10. Each inner run restarts from x and stops early once the total loss
    has not fallen by 0.01 % over a tenth of the iterations (the authors' abort_early).

    The result is the adversarial example with the smallest ℓ2 found over all search steps; a sample
    with none is returned unchanged (its distance is then 0: report success rates beside ℓ2).

    Arguments:
        model (nn.Module): returns the logits.
        search_steps (int): binary-search steps over c. Default: 9.
        initial_const (float): c₀. Default: 0.01.
        steps (int): Adam iterations per value of c. Default: 1000.
        lr (float): Adam learning rate. Default: 0.005.
        kappa (float): confidence κ ≥ 0 (a success needs a margin of κ). Default: 0.
        abort_early (bool): stop an inner run whose loss stalls. Default: True.

    Shape:
        images: (N, C, H, W) in [0, 1]; labels: (N,); output: (N, C, H, W) in [0, 1].
    """

    def __init__(self, model, search_steps=9, initial_const=0.01, steps=1000, lr=0.005, kappa=0.0,
                 abort_early=True):
        super().__init__("CWL2Search", model)
        self.search_steps, self.initial_const, self.steps, self.lr = search_steps, initial_const, steps, lr
        self.kappa, self.abort_early = kappa, abort_early
        self.supported_mode = ["default", "targeted"]
        # called as on_step(done, total) every ten iterations: a caller's progress and cancel check (it may
        # raise to stop the attack; one batch of 9 × 1,000 iterations takes minutes on a CPU)
        self.on_step = None

    def margin(self, logits: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
        """Z_cls − max_{j≠cls} Z_j per sample (N,)."""
        own = logits.gather(1, cls[:, None])[:, 0]
        others = logits.masked_fill(torch.nn.functional.one_hot(cls, logits.shape[1]).bool(), float("-inf"))
        return own - others.max(1).values

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        images = images.clone().detach().to(self.device)
        labels = labels.clone().detach().to(self.device)
        target = self.get_target_label(images, labels) if self.targeted else None
        n = len(images)
        lower = torch.zeros(n, device=images.device)
        upper = torch.full((n,), 1e10, device=images.device)
        const = torch.full((n,), float(self.initial_const), device=images.device)
        best_l2 = torch.full((n,), float("inf"), device=images.device)
        best_adv = images.clone()
        # atanh of x pulled slightly inside (−1, 1): x = 0 or 1 exactly would need w = ∓∞
        w_start = torch.atanh((images * 2 - 1) * (1 - 1e-6))
        check_every = max(self.steps // 10, 1)
        for search in range(self.search_steps):
            w = w_start.clone().requires_grad_(True)
            optimizer = torch.optim.Adam([w], lr=self.lr)
            found = torch.zeros(n, dtype=torch.bool, device=images.device)
            previous = float("inf")
            for step in range(self.steps):
                if self.on_step is not None and step % 10 == 0:
                    self.on_step(search * self.steps + step, self.search_steps * self.steps)
                adv = (torch.tanh(w) + 1) / 2
                l2 = (adv - images).flatten(1).pow(2).sum(1)
                logits = self.get_logits(adv)
                if target is None:
                    margin = self.margin(logits, labels)  # attacker wants it < 0
                else:
                    margin = -self.margin(logits, target)
                loss = (l2 + const * margin.clamp(min=-self.kappa)).sum()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                with torch.no_grad():
                    success = margin.detach() < -self.kappa
                    better = success & (l2.detach() < best_l2)
                    best_l2 = torch.where(better, l2.detach(), best_l2)
                    best_adv[better] = adv.detach()[better]
                    found |= success
                if self.abort_early and step % check_every == 0:
                    if loss.item() > previous * 0.9999:
                        break
                    previous = loss.item()
            upper = torch.where(found, torch.minimum(upper, const), upper)
            lower = torch.where(found, lower, torch.maximum(lower, const))
            bounded = upper < 1e9
            const = torch.where(bounded, (lower + upper) / 2, const * 10)
        return best_adv.clamp(0, 1).detach()
