"""Prototype conformity loss (PCL) with deep supervision.

Mustafa, Khan, Hayat, Goecke, Shen, Shao, "Deeply Supervised Discriminative Learning for Adversarial
Defense", TPAMI 2020 (journal version of "Adversarial Defense by Restricting the Hidden Space of Deep
Neural Networks", ICCV 2019, arXiv 1904.00887) (../shared/papers/004_*.txt, spec:
../shared/spec/seed-pcl.md). The form trained here is the one of the authors' official code (spec
§1.6–1.7), not Eq. 5 with unit weights, which is affine in the features and unbounded below (§1.4).
"""
from __future__ import annotations

from itertools import accumulate
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .base import ConfigError, LossOutput, Objective, Param

DIST_MIN, DIST_MAX = 1e-12, 1e12  # the official code clamps every squared distance to this range
FC_WIDTH = 4  # branch "gap+fc": GAP(C) -> FC(4·C), as Table 1's layer-3 branch GAP(128) -> FC(512)


class Tap(nn.Module):
    """The auxiliary branch G^l_φ of one supervised depth (PCL §3.2, Fig. 3, Table 1).

    Global average pooling over the spatial dimensions of a feature map (a feature vector passes
    unchanged), then, when ``out_dim`` is given, a linear layer. No activation: prototypes are
    N(0, 1) and have negative coordinates.

    Arguments:
        channels (int): C, the channel / feature count of the tapped tensor (``model.feature_dims``).
        out_dim (int | None): size of the FC output; None for GAP only. (Default: None)

    Shape:
        - input: (B, C, H, W) or (B, C).
        - output: (B, out_dim or C).
    """

    def __init__(self, channels: int, out_dim: int | None = None):
        super().__init__()
        self.channels = int(channels)
        self.fc = nn.Linear(self.channels, int(out_dim)) if out_dim else None
        self.out_dim = int(out_dim) if out_dim else self.channels

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if h.dim() > 2:
            h = h.mean(tuple(range(2, h.dim())))
        # F.linear rather than self.fc(h): the same product without a second module call per tap
        return h if self.fc is None else F.linear(h, self.fc.weight, self.fc.bias)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, out_dim={self.out_dim}"


def squared_distances(f: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """(B, K) squared Euclidean distances ‖f_i − c_j‖², clamped to [1e-12, 1e12] (spec §2.1)."""
    d = f.pow(2).sum(1, keepdim=True) + c.pow(2).sum(1) - 2 * f @ c.T
    return d.clamp(DIST_MIN, DIST_MAX)


class _ConformityLoss(torch.autograd.Function):
    """(λ_pull·pull − λ_push·push, pull, push) of concatenated tap features, with a hand-written backward.

    pull = 1/B Σ_i clamp(‖f_i − c_{y_i}‖²) and push = 1/(B(K−1)) Σ_i Σ_{j≠y_i} clamp(‖f_i − c′_j‖²), the
    clamp to [1e-12, 1e12] passing no gradient where it bites, as autograd would give it through
    pull by the difference f − c_y and push by the expanded ‖f‖² + ‖c′‖² − 2 f·c′ (spec §2.1). Only the
    first output is differentiable; pull and push are for the charts. Autograd through the same
    formula took 1.6–1.8× as long on the digits CNN (forward and backward, batch 200): the backward
    of pow, sum, clamp and c[y] is one pass over the (B, D) features each, and every scalar op of the
    weighting is a node of its own.
    With a_i = 2 λ_pull/B where the pull clamp passes (else 0) and u_ji = −2 λ_push/(B(K−1)) where
    j ≠ y_i and the push clamp passes (else 0), times the incoming gradient:

        ∂/∂f_i  = a_i (f_i − c_{y_i}) + Σ_j u_ji (f_i − c′_j)
        ∂/∂c_j  = −Σ_{i: y_i = j} a_i (f_i − c_j)
        ∂/∂c′_j = Σ_i u_ji (c′_j − f_i)

    The push distances are held as (K, B): on the CPU c′ fᵀ is about twice as fast as f c′ᵀ for K ≪ B.
    Not twice differentiable (nothing differentiates the training loss twice).
    """

    @staticmethod
    def forward(ctx, f, c, cp, y, lam_pull: float, lam_push: float):
        b, k = f.shape[0], c.shape[0]
        diff = f - c.index_select(0, y)  # index_select: several times faster than c[y], forward and back
        pull_sq = (diff * diff).sum(1)
        pull_clamped = pull_sq.clamp(DIST_MIN, DIST_MAX)
        pull = pull_clamped.mean()
        d = torch.addmm((cp * cp).sum(1)[:, None] + (f * f).sum(1), cp, f.T, alpha=-2)  # d_ji = ‖c′_j − f_i‖²
        d_clamped = d.clamp(DIST_MIN, DIST_MAX)
        pair = torch.full_like(d, 1 / (b * (k - 1))).scatter_(0, y[None], 0.0)  # each (j ≠ y_i, i)'s weight
        push = torch.dot(d_clamped.view(-1), pair.view(-1))
        term = lam_pull * pull - lam_push * push
        ctx.mark_non_differentiable(pull, push)
        # clamp(x) == x exactly where the clamp passes the gradient (min ≤ x ≤ max; never for NaN)
        pull_weight = (pull_clamped == pull_sq).to(f.dtype).mul_(2 * lam_pull / b)
        push_weight = torch.where(d_clamped == d, pair, 0.0).mul_(-2 * lam_push)
        ctx.save_for_backward(f, cp, y, diff, pull_weight, push_weight)
        return term, pull, push

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_term, _grad_pull, _grad_push):
        f, cp, y, diff, pull_weight, push_weight = ctx.saved_tensors
        need_f, need_c, need_cp = ctx.needs_input_grad[:3]
        pull_part = diff * (pull_weight * grad_term)[:, None]  # a_i (f_i − c_{y_i})
        u = push_weight * grad_term  # (K, B)
        grad_f = grad_c = grad_cp = None
        if need_f:
            grad_f = torch.addcmul(pull_part, f, u.sum(0)[:, None]).addmm_(u.T, cp, alpha=-1)
        if need_c:
            grad_c = torch.zeros_like(cp).index_add_(0, y, pull_part, alpha=-1)
        if need_cp:
            grad_cp = torch.addmm(cp * u.sum(1)[:, None], u, f, alpha=-1)
        return grad_f, grad_c, grad_cp, None, None, None


class PCL(Objective):
    """Cross-entropy on the logits plus a prototype conformity loss at several depths.

    For every supervised depth l with tap features f^l = G^l(F^l(x)) ∈ R^{d_l}, learned pull
    prototypes C^l and push prototypes C'^l (both (K, d_l), initialised N(0, 1)):

        pull_l = 1/B Σ_i ‖f^l_i − c^l_{y_i}‖²
        push_l = 1/(B(K−1)) Σ_i Σ_{j≠y_i} ‖f^l_i − c'^l_j‖²
        L      = CE(z, y) + Σ_l (λ_pull·pull_l − λ_push·push_l)

    (spec §1.6, "official" variant; Algorithm 1 with τ = 1). The first ``warmup_epochs`` epochs train
    CE alone (Algorithm 1, stage 1). Prototypes are not trained by the main optimiser: each set has
    its own plain SGD (no momentum, no weight decay; lr_pull 0.5, lr_push 1e-4). After the model's
    step the prototype gradients are divided by the term's weight and the prototypes take that step
    (spec §1.7), so pull prototypes follow the class means of their features and push prototypes
    move away from other classes' features (gradient ascent on push), whatever the weights.

    Arguments:
        num_classes (int): K; the latent z is the K logits of the model's mapper.
        lam_pull (float): λ_pull, weight of the pull terms (> 0). Default: 1.
        lam_push (float): λ_push, weight of the push terms (≥ 0; ≪ 1, see spec §1.4). Default: 1e-4.
        lr_pull (float): learning rate of the pull prototypes' SGD. Default: 0.5.
        lr_push (float): learning rate of the push prototypes' SGD. Default: 1e-4.
        warmup_epochs (int): CE-only epochs before the PCL terms switch on. Default: 10.
        taps (int): how many of the deepest tensors of ``model.forward_features`` are supervised
            (capped at the model's count). Default: 3 (Table 11's best, layers 3+4+5).
        branch (str): "gap" (global average pooling of a feature map; a feature vector passes as it
            is: Table 1's CNN-6 taps "GAP → L_PC", FC(512), FC(64), the official code's taps, and
            spec A16's "taps are the tensors passed to the next layer") or "gap+fc" (pooling, then a
            linear layer C → 4·C at every tap, as Table 1's ResNet layer-3 branch GAP(128) → FC(512)).
            Default: "gap".
        proto_init (str): "randn" (N(0, 1), the official code) or "class_means" (each class's pull and
            push prototypes are set to the mean of its tap features in the first PCL batch that holds
            the class; spec A6). Default: "randn".
        prediction (str): "softmax" (argmax z) or "prototype" (Eq. 7, nearest pull prototype of the
            deepest tap; needs the features, see ``predict_features``). Default: "softmax".

    Shape:
        z: (B, K) logits; y: (B,) int64 labels. ``predict(z)`` is always argmax z, the rule of every
        table in the paper (§6.1); ``predict_features(features, z)`` honours ``prediction``.
        ``attach(model)`` must be called before training (it builds the branches and prototypes on
        ``model.feature_dims``); the loop in engine/train.py does.
    """

    name = "pcl"
    title = "PCL"
    citation = "Mustafa et al., TPAMI 2020 / ICCV 2019 (prototype conformity loss, deep supervision)"
    PART_NAMES = ("loss", "ce", "pull", "push")
    PARAMS = (
        Param("lam_pull", 1.0, "λ_pull: weight of the pull term ‖f − c_y‖² at each tap (PCL Eq. 8 / official "
              "code --weight-prox 1)", minimum=0.0, exclusive_minimum=True),
        Param("lam_push", 1e-4, "λ_push: weight of the push term (mean ‖f − c′_j‖², j ≠ y); official code 1e-4, "
              "1e-5 with AT; Eq. 5's 1 is unbounded (spec §1.4)", minimum=0.0),
        Param("lr_pull", 0.5, "learning rate of the pull prototypes' own SGD (PCL official code lr_prox)",
              minimum=0.0),
        Param("lr_push", 1e-4, "learning rate of the push prototypes' own SGD (PCL official code lr_conprox; "
              "1e-5 with AT)", minimum=0.0),
        Param("warmup_epochs", 10, "CE-only epochs before CE + PCL (PCL Algorithm 1 stage 1; T′ = 50 on MNIST)",
              minimum=0, maximum=100_000),
        Param("taps", 3, "number of deepest feature depths supervised (PCL Table 11: layers 3+4+5 best); "
              "capped at the model's", minimum=1, maximum=64),
        Param("branch", "gap", "auxiliary branch G_φ per tap (PCL Fig. 3): gap, pooling only (Table 1's CNN-6 "
              "taps, official code); gap+fc, GAP → FC(4C) at every tap (Table 1's ResNet layer-3 branch)",
              choices=("gap", "gap+fc")),
        Param("proto_init", "randn", "randn: prototypes ~N(0, 1) (PCL official code); class_means: each class's "
              "prototypes start at its tap-feature mean in the first PCL batch holding it (spec A6 option)",
              choices=("randn", "class_means")),
        Param("prediction", "softmax", "softmax: argmax of the logits (all PCL tables, §6.1); prototype: nearest "
              "pull prototype of the deepest tap (PCL Eq. 7), needs features", choices=("softmax", "prototype")),
    )

    def __init__(self, num_classes: int, **params: Any):
        super().__init__(num_classes, **params)
        self.lam_pull = float(self.params["lam_pull"])
        self.lam_push = float(self.params["lam_push"])
        self.lr_pull = float(self.params["lr_pull"])
        self.lr_push = float(self.params["lr_push"])
        self.epoch = 1
        # Built by attach(model) (or from a checkpoint's shapes when a state_dict is loaded).
        self.register_buffer("tap_index", torch.zeros(0, dtype=torch.long))
        # d_l of every supervised depth: depth l owns that many consecutive columns of the prototypes
        self.register_buffer("tap_width", torch.zeros(0, dtype=torch.long))
        # proto_init="class_means": which classes' prototypes have been set from their features yet
        self.register_buffer("seeded", torch.zeros(num_classes, dtype=torch.bool))
        self._all_seeded = False
        self.branches = nn.ModuleList()
        # (K, Σ_l d_l) each: every depth's prototypes side by side, as the training terms use them
        # (one pass over all depths, see conformity_loss); prototypes(l) is depth l's block.
        self.register_parameter("pull_prototypes", None)
        self.register_parameter("push_prototypes", None)
        self._taps: list[int] = []
        self._columns: list[slice] = []
        self._register_load_state_dict_pre_hook(self._build_from_state)

    @classmethod
    def param_warnings(cls, num_classes, params):
        p = cls.validate_params(params)
        out = []
        if p["lam_push"] >= 1:
            out.append(f"pcl.lam_push = {p['lam_push']:g} ≥ 1: with the pull weight it makes the loss (nearly) "
                       "affine in the features and unbounded below (PCL Eq. 5, spec §1.4); the code uses 1e-4")
        return out

    # --- structure ------------------------------------------------------------------------------
    def attach(self, model: nn.Module) -> None:
        """Build one branch and two prototype sets per supervised depth of ``model`` (fresh N(0, 1)
        prototypes). The deepest ``taps`` tensors are supervised."""
        dims = [int(d) for d in getattr(model, "feature_dims", [])]
        if not dims:
            raise ConfigError("pcl needs a model with intermediate features (model.feature_dims is empty)")
        n = min(int(self.params["taps"]), len(dims))
        index = list(range(len(dims) - n, len(dims)))
        fc = self.params["branch"] == "gap+fc"
        self._build(index, [dims[i] for i in index], [FC_WIDTH * dims[i] if fc else None for i in index])

    def _build(self, index: list[int], channels: list[int], out_dims: list[int | None]) -> None:
        device = self.tap_index.device
        self.tap_index = torch.tensor(index, dtype=torch.long, device=device)
        self._taps = list(index)
        branches, pull, push = [], [], []
        for c, d in zip(channels, out_dims):  # the random draws in the order of one tensor per depth
            tap = Tap(c, d)
            branches.append(tap)
            pull.append(torch.randn(self.num_classes, tap.out_dim))
            push.append(torch.randn(self.num_classes, tap.out_dim))
        self.branches = nn.ModuleList(branches).to(device)
        widths = [tap.out_dim for tap in branches]
        self.tap_width = torch.tensor(widths, dtype=torch.long, device=device)
        self._columns = [slice(end - width, end) for width, end in zip(widths, accumulate(widths))]
        self.pull_prototypes = nn.Parameter(torch.cat(pull, 1).to(device))
        self.push_prototypes = nn.Parameter(torch.cat(push, 1).to(device))
        self.seeded.zero_()
        self._all_seeded = False

    def _build_from_state(self, state_dict, prefix, *args) -> None:
        """A state_dict loaded into an objective that was never attached (engine.train.load_run builds
        the objective without the model) brings its own structure: rebuild it from the shapes.
        Checkpoints from before the prototypes were stored side by side (one tensor per depth,
        ``pull_prototypes.0``, …) are converted first."""
        key = prefix + "tap_index"
        if key not in state_dict or state_dict[key].numel() == 0:
            return
        depths = state_dict[key].numel()
        if f"{prefix}pull_prototypes.0" in state_dict:
            for kind in ("pull", "push"):
                per_depth = [state_dict.pop(f"{prefix}{kind}_prototypes.{l}") for l in range(depths)]
                state_dict[f"{prefix}{kind}_prototypes"] = torch.cat(per_depth, 1)
            state_dict[prefix + "tap_width"] = torch.tensor([p.shape[1] for p in per_depth])
        if self._taps:
            return
        index = [int(i) for i in state_dict[key].tolist()]
        channels, out_dims = [], []
        for l, width in enumerate(state_dict[prefix + "tap_width"].tolist()):
            weight = state_dict.get(f"{prefix}branches.{l}.fc.weight")
            channels.append(weight.shape[1] if weight is not None else width)
            out_dims.append(weight.shape[0] if weight is not None else None)
        with torch.random.fork_rng(devices=[]):  # the placeholders are overwritten; leave the RNG alone
            self._build(index, channels, out_dims)

    @property
    def supervised_layers(self) -> list[int]:
        """Indices into ``model.forward_features(x)[0]`` of the supervised tensors, shallow to deep."""
        return list(self._taps)

    @property
    def tap_dims(self) -> list[int]:
        """Prototype dimension d_l of every supervised depth."""
        return [c.stop - c.start for c in self._columns]

    def prototypes(self, layer: int = -1, kind: str = "pull") -> torch.Tensor:
        """The (K, d_l) prototypes of supervised depth ``layer`` (an index into ``supervised_layers``,
        −1 the deepest), detached. ``kind``: "pull" (the class prototypes of Eq. 7) or "push"."""
        sets = {"pull": self.pull_prototypes, "push": self.push_prototypes}
        if kind not in sets:
            raise ConfigError(f"kind must be pull or push; got {kind!r}")
        if sets[kind] is None:
            raise ConfigError("pcl: no prototypes yet (attach(model) builds them)")
        return sets[kind][:, self._columns[layer]].detach()

    def shared_parameters(self):
        """The branches' parameters (trained by the main optimiser); never the prototypes."""
        return self.branches.parameters()

    # --- the loss ---------------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        """Whether the PCL terms are on (the epoch is past the warm-up)."""
        return self.epoch > int(self.params["warmup_epochs"])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        # seeding is a no-op once every class is seeded; asking is a host sync, so once an epoch
        self._all_seeded = bool(self.seeded.all())

    def tap_features(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """f^l = G^l(features[l]) for every supervised depth, shallow to deep: (B, d_l) each."""
        if not self._taps:
            raise ConfigError("pcl: call attach(model) before using the objective (no branches yet)")
        return [branch(features[i]) for branch, i in zip(self.branches, self._taps)]

    def conformity_terms(self, taps: list[torch.Tensor], y: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per-sample (pull (B,), push (B,)) of every tap: ‖f − c_y‖² and mean_{j≠y} ‖f − c′_j‖²."""
        out = []
        k = self.num_classes
        for f, columns in zip(taps, self._columns):
            c, cp = self.pull_prototypes[:, columns], self.push_prototypes[:, columns]
            dtype = torch.promote_types(f.dtype, c.dtype)
            f, c, cp = f.to(dtype), c.to(dtype), cp.to(dtype)
            pull = (f - c[y]).pow(2).sum(1).clamp(DIST_MIN, DIST_MAX)
            others = 1.0 - F.one_hot(y, k).to(dtype)
            push = (squared_distances(f, cp) * others).sum(1) / (k - 1)
            out.append((pull, push))
        return out

    def conformity_loss(self, taps: list[torch.Tensor], y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(λ_pull·pull − λ_push·push, pull, push) with pull = Σ_l mean_i pull_l and push = Σ_l mean_i
        push_l: the training terms of all taps at once (only the first is differentiable).

        A squared distance over concatenated vectors is the sum of the per-tap squared distances, so
        the taps' features are concatenated (the prototypes are stored that way) and every layer is
        done in one pass (the same values as ``conformity_terms`` summed; the 1e-12 / 1e12 safety
        clamp then applies to the summed distance). On a small network this keeps deep supervision
        from costing more kernel launches than the network itself.
        """
        f = torch.cat(taps, 1)
        c, cp = self.pull_prototypes, self.push_prototypes
        dtype = torch.promote_types(f.dtype, c.dtype)
        return _ConformityLoss.apply(f.to(dtype), c.to(dtype), cp.to(dtype), y, self.lam_pull, self.lam_push)

    def training_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> LossOutput:
        features, z = model.forward_features(x)
        ce = F.cross_entropy(z, y)
        active = self.active
        # In the warm-up the terms are only reported: no graph, no gradient for branches or prototypes.
        with torch.set_grad_enabled(active and torch.is_grad_enabled()):
            taps = self.tap_features(features)
            if active and self.params["proto_init"] == "class_means" and not self._all_seeded:
                self.seed_prototypes(taps, y)
            term, pull, push = self.conformity_loss(taps, y)
        loss = ce + term if active else ce
        parts = {"loss": loss.detach(), "ce": ce.detach(), "pull": pull, "push": push}
        return LossOutput(loss, parts, z)

    def loss(self, z: torch.Tensor, y: torch.Tensor) -> LossOutput:
        """The loss on the logits alone (what is left without features): cross-entropy."""
        ce = F.cross_entropy(z, y)
        return LossOutput(ce, {"loss": ce.detach(), "ce": ce.detach()}, z)

    @torch.no_grad()
    def seed_prototypes(self, taps: list[torch.Tensor], y: torch.Tensor) -> None:
        """proto_init="class_means": set the pull and push prototypes of every class present in the
        batch and not seeded yet to the class's mean tap feature (spec A6). Called by
        ``training_loss`` on PCL batches until every class is seeded, which ``set_epoch`` checks once
        an epoch: nothing here asks the device for a value (no host sync in the step)."""
        f = torch.cat(taps, 1).detach()
        onehot = F.one_hot(y, self.num_classes).to(f.dtype)
        counts = onehot.sum(0)
        new = (counts > 0) & ~self.seeded
        means = (onehot.T @ f) / counts.clamp_min(1)[:, None]
        for c in (self.pull_prototypes, self.push_prototypes):
            c.data.copy_(torch.where(new[:, None], means.to(c.dtype), c.data))
        self.seeded |= new

    # --- the prototype step -----------------------------------------------------------------------
    def before_step(self) -> None:
        for p in (self.pull_prototypes, self.push_prototypes):
            if p is not None:
                p.grad = None

    @torch.no_grad()
    def after_step(self, z: torch.Tensor, y: torch.Tensor) -> None:
        """A plain SGD step (no momentum, no weight decay; spec §1.7) on each prototype gradient divided
        by its term's weight: c ← c − lr_pull·∂pull/∂c and c′ ← c′ + lr_push·∂push/∂c′ (ascent: the
        push term enters with −). Written out, p ← p − (lr/λ)·∂L/∂p, because torch.optim.SGD's
        per-step bookkeeping cost more than the update itself on a small network."""
        if not self.active:
            return
        for weight, lr, p in ((self.lam_pull, self.lr_pull, self.pull_prototypes),
                              (self.lam_push, self.lr_push, self.push_prototypes)):
            if p is None or p.grad is None:
                continue
            if weight > 0:
                p.add_(p.grad, alpha=-lr / weight)
            p.grad = None

    # --- prediction, attacks, views -----------------------------------------------------------------
    def nearest_prototype(self, features: list[torch.Tensor], layer: int = -1) -> torch.Tensor:
        """PCL Eq. 7: argmin_j ‖f^l − c^l_j‖ on supervised depth ``layer`` (−1 the deepest). (B,) labels."""
        f = self.tap_features(features)[layer]
        c = self.pull_prototypes[:, self._columns[layer]]
        dtype = torch.promote_types(f.dtype, c.dtype)
        return squared_distances(f.to(dtype), c.to(dtype)).argmin(dim=1)

    def predict_features(self, features: list[torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        """The prediction the ``prediction`` constant asks for, from ``model.forward_features(x)``."""
        if self.params["prediction"] == "prototype":
            return self.nearest_prototype(features)
        return self.predict(z)

    @torch.no_grad()
    def views(self, model: nn.Module, x: torch.Tensor):
        """Each supervised layer's tap features with its pull prototypes (PCL Fig. 1 / Fig. 6)."""
        taps = self.tap_features(model.forward_features(x)[0])
        return {f"layer {layer} (d={f.shape[1]})": (f, self.prototypes(i))
                for i, (layer, f) in enumerate(zip(self.supervised_layers, taps))}

    @torch.no_grad()
    def test_predictions(self, model: nn.Module, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        if self.params["prediction"] != "prototype":
            return self.predict(z)
        chunks = [self.nearest_prototype(model.forward_features(x[i:i + 1000])[0]) for i in range(0, len(x), 1000)]
        return torch.cat(chunks)

    def adaptive_objective_features(self, features: list[torch.Tensor], z: torch.Tensor, y: torch.Tensor,
                                    target: torch.Tensor | None = None) -> torch.Tensor:
        """Per-sample joint loss CE + Σ_l (λ_pull·pull − λ_push·push) with the training weights (PCL
        Table 4's adaptive white-box attack, spec A13), to maximise (untargeted) or, for ``target``,
        the negated joint loss towards the target class."""
        labels = y if target is None else target
        value = F.cross_entropy(z, labels, reduction="none")
        for pull, push in self.conformity_terms(self.tap_features(features), labels):
            value = value + self.lam_pull * pull - self.lam_push * push
        return value if target is None else -value

    def geometry(self):
        return None  # the logits view has no fixed centres; prototypes(layer) serves the feature views

    def diagnostics(self, z, y):
        out = {"mean_norm_z": float(z.norm(dim=1).mean())}
        if self.pull_prototypes is not None:
            c = self.prototypes(-1).float()
            gaps = torch.cdist(c, c)[~torch.eye(len(c), dtype=torch.bool, device=c.device)]
            out["mean_norm_prototype"] = float(c.norm(dim=1).mean())
            out["mean_prototype_distance"] = float(gaps.mean())
        return out
