"""SimBA-pixel: the simple score-based black-box attack (not in torchattacks)."""
from __future__ import annotations

import torch
from torchattacks.attack import Attack


class SimBA(Attack):
    r"""SimBA (Guo et al. 2019, "Simple black-box adversarial attacks", Algorithm 1) in the pixel basis,
    as I-SCE runs it (300 queries per image on MNIST, 500 on CIFAR-10; ε ∈ {0.5, 1, 1.5}).

    Every iteration takes the next coordinate q of a random permutation of the pixels and tries
    x + εq, then x − εq (each clipped to [0, 1]); the first that lowers the score is kept. A sample
    stops once it is misclassified or has spent its ``queries`` (candidate evaluations; a candidate
    that clipping leaves unchanged costs none). When every pixel has been tried a fresh permutation
    starts (8×8 digits have 64 pixels, fewer than 300 queries). ε is the ℓ2 length of each step, so
    after T accepted steps ‖δ‖₂ ≤ ε√T.

    The score is the true class's softmax probability in the paper; by default the logit margin
    Z_y − max_{j≠y} Z_j instead, because objectives that saturate softmax (GCCS, MMC) make the
    float32 probability exactly 1, which no step lowers (gradient-free masking).

    Arguments:
        model (nn.Module): returns the logits (queried as a black box: outputs only, no gradients).
        eps (float): step length per query (ℓ2 = ℓ∞ of one pixel step). Default: 0.2.
        queries (int): model queries per image. Default: 300.
        score (str): "margin" or "probability". Default: "margin".

    Shape:
        images: (N, C, H, W) in [0, 1]; labels: (N,); output: (N, C, H, W) in [0, 1].
    """

    def __init__(self, model, eps=0.2, queries=300, score="margin"):
        super().__init__("SimBA", model)
        if score not in ("margin", "probability"):
            raise ValueError(f"score must be margin or probability; got {score!r}")
        self.eps, self.queries, self.score = eps, queries, score
        self.supported_mode = ["default"]

    @torch.no_grad()
    def scores(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(score the attacker lowers, still classified as y) per sample."""
        logits = self.get_logits(x)
        correct = logits.argmax(1) == labels
        if self.score == "probability":
            return logits.softmax(1).gather(1, labels[:, None])[:, 0], correct
        own = logits.gather(1, labels[:, None])[:, 0]
        others = logits.masked_fill(torch.nn.functional.one_hot(labels, logits.shape[1]).bool(), float("-inf"))
        return own - others.max(1).values, correct

    @torch.no_grad()
    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        images = images.clone().detach().to(self.device)
        labels = labels.clone().detach().to(self.device)
        if self.eps <= 0:
            return images
        shape, n = images.shape, len(images)
        dims = images[0].numel()
        adv = images.clone().flatten(1)
        score, correct = self.scores(images, labels)
        used = torch.zeros(n, dtype=torch.long, device=images.device)
        rows = torch.arange(n, device=images.device)
        order = torch.rand(n, dims, device=images.device).argsort(1)
        i = 0
        while True:
            pending = correct & (used < self.queries)
            if not pending.any():
                break
            if i > 0 and i % dims == 0:
                order = torch.rand(n, dims, device=images.device).argsort(1)
            coord = order[:, i % dims]
            for sign in (1.0, -1.0):
                candidate = adv.clone()
                candidate[rows, coord] = (adv[rows, coord] + sign * self.eps).clamp(0, 1)
                asked = pending & (candidate[rows, coord] != adv[rows, coord])
                if not asked.any():
                    continue
                new_score, new_correct = self.scores(candidate[asked].view(-1, *shape[1:]), labels[asked])
                used[asked] += 1
                better = torch.zeros_like(asked)
                better[asked] = new_score < score[asked]
                adv[better] = candidate[better]
                score[asked] = torch.where(better[asked], new_score, score[asked])
                correct[asked] = torch.where(better[asked], new_correct, correct[asked])
                pending = pending & ~better & (used < self.queries)
            i += 1
        return adv.view(shape).detach()
