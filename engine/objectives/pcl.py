"""Prototype conformity loss (PCL) with deep supervision.

Mustafa, Khan, Hayat, Goecke, Shen, Shao, "Deeply Supervised Discriminative Learning for Adversarial
Defense", TPAMI 2020 (journal version of "Adversarial Defense by Restricting the Hidden Space of Deep
Neural Networks", ICCV 2019, arXiv 1904.00887) (../shared/papers/004_*.txt, spec:
../shared/spec/seed-pcl.md). The form trained here is the one of the authors' official code (spec
§1.6–1.7), not Eq. 5 with unit weights, which is affine in the features and unbounded below (§1.4).
"""
from __future__ import annotations

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
            h = h.flatten(2).mean(2)
        return h if self.fc is None else self.fc(h)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, out_dim={self.out_dim}"


def squared_distances(f: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """(B, K) squared Euclidean distances ‖f_i − c_j‖², clamped to [1e-12, 1e12] (spec §2.1)."""
    d = f.pow(2).sum(1, keepdim=True) + c.pow(2).sum(1) - 2 * f @ c.T
    return d.clamp(DIST_MIN, DIST_MAX)


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
    step the prototype gradients are divided by the term's weight and the prototype optimisers step
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
        branch (str): "gap+fc" (global average pool, then a linear layer C → 4·C, as Table 1's layer-3
            branch GAP(128) → FC(512)) or "gap" (pooling only: the tap is the trunk's own feature, as
            Table 1's layers 4–5 and the official code). Default: "gap+fc".
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
        Param("branch", "gap+fc", "auxiliary branch G_φ per tap (PCL Fig. 3): gap+fc, GAP → FC(4C) (Table 1 "
              "layer 3); gap, pooling only (Table 1 layers 4–5, official code)", choices=("gap+fc", "gap")),
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
        self.epoch = 1
        # Built by attach(model) (or from a checkpoint's shapes when a state_dict is loaded).
        self.register_buffer("tap_index", torch.zeros(0, dtype=torch.long))
        # proto_init="class_means": which classes' prototypes have been set from their features yet
        self.register_buffer("seeded", torch.zeros(num_classes, dtype=torch.bool))
        self._all_seeded = False
        self.branches = nn.ModuleList()
        self.pull_prototypes = nn.ParameterList()
        self.push_prototypes = nn.ParameterList()
        self._taps: list[int] = []
        self._optimisers: tuple[torch.optim.SGD, torch.optim.SGD] | None = None
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
        prototypes), and the prototype optimisers. The deepest ``taps`` tensors are supervised."""
        dims = [int(d) for d in getattr(model, "feature_dims", [])]
        if not dims:
            raise ConfigError("pcl needs a model with intermediate features (model.feature_dims is empty)")
        n = min(int(self.params["taps"]), len(dims))
        index = list(range(len(dims) - n, len(dims)))
        fc = self.params["branch"] == "gap+fc"
        self._build(index, [dims[i] for i in index], [FC_WIDTH * dims[i] if fc else None for i in index])
        self.prototype_optimisers()

    def _build(self, index: list[int], channels: list[int], out_dims: list[int | None]) -> None:
        device = self.tap_index.device
        self.tap_index = torch.tensor(index, dtype=torch.long, device=device)
        self._taps = list(index)
        branches, pull, push = [], [], []
        for c, d in zip(channels, out_dims):
            tap = Tap(c, d)
            branches.append(tap)
            pull.append(nn.Parameter(torch.randn(self.num_classes, tap.out_dim)))
            push.append(nn.Parameter(torch.randn(self.num_classes, tap.out_dim)))
        self.branches = nn.ModuleList(branches).to(device)
        self.pull_prototypes = nn.ParameterList(pull).to(device)
        self.push_prototypes = nn.ParameterList(push).to(device)
        self.seeded.zero_()
        self._all_seeded = False
        self._optimisers = None

    def _build_from_state(self, state_dict, prefix, *args) -> None:
        """A state_dict loaded into an objective that was never attached (engine.train.load_run builds
        the objective without the model) brings its own structure: rebuild it from the shapes."""
        key = prefix + "tap_index"
        if self._taps or key not in state_dict or state_dict[key].numel() == 0:
            return
        index = [int(i) for i in state_dict[key].tolist()]
        channels, out_dims = [], []
        for l in range(len(index)):
            weight = state_dict.get(f"{prefix}branches.{l}.fc.weight")
            dim = state_dict[f"{prefix}pull_prototypes.{l}"].shape[1]
            channels.append(weight.shape[1] if weight is not None else dim)
            out_dims.append(weight.shape[0] if weight is not None else None)
        with torch.random.fork_rng(devices=[]):  # the placeholders are overwritten; leave the RNG alone
            self._build(index, channels, out_dims)

    def prototype_optimisers(self) -> tuple[torch.optim.SGD, torch.optim.SGD]:
        """(pull SGD, push SGD): plain SGD, no momentum, no weight decay (spec §1.7). Rebuilt when the
        prototype tensors are no longer the ones they hold (e.g. ``.to()`` under torch's
        overwrite-on-conversion mode); plain SGD has no state, so nothing is lost."""
        pull, push = list(self.pull_prototypes), list(self.push_prototypes)
        if not pull:
            raise ConfigError("pcl: call attach(model) before training (no prototypes yet)")
        opts = self._optimisers
        if opts is None or not (_same(opts[0], pull) and _same(opts[1], push)):
            opts = (torch.optim.SGD(pull, lr=float(self.params["lr_pull"]), momentum=0.0, weight_decay=0.0),
                    torch.optim.SGD(push, lr=float(self.params["lr_push"]), momentum=0.0, weight_decay=0.0))
            self._optimisers = opts
        return opts

    @property
    def supervised_layers(self) -> list[int]:
        """Indices into ``model.forward_features(x)[0]`` of the supervised tensors, shallow to deep."""
        return list(self._taps)

    @property
    def tap_dims(self) -> list[int]:
        """Prototype dimension d_l of every supervised depth."""
        return [int(p.shape[1]) for p in self.pull_prototypes]

    def prototypes(self, layer: int = -1, kind: str = "pull") -> torch.Tensor:
        """The (K, d_l) prototypes of supervised depth ``layer`` (an index into ``supervised_layers``,
        −1 the deepest), detached. ``kind``: "pull" (the class prototypes of Eq. 7) or "push"."""
        sets = {"pull": self.pull_prototypes, "push": self.push_prototypes}
        if kind not in sets:
            raise ConfigError(f"kind must be pull or push; got {kind!r}")
        if not len(sets[kind]):
            raise ConfigError("pcl: no prototypes yet (attach(model) builds them)")
        return sets[kind][layer].detach()

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

    def tap_features(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """f^l = G^l(features[l]) for every supervised depth, shallow to deep: (B, d_l) each."""
        if not self._taps:
            raise ConfigError("pcl: call attach(model) before using the objective (no branches yet)")
        return [branch(features[i]) for branch, i in zip(self.branches, self._taps)]

    def conformity_terms(self, taps: list[torch.Tensor], y: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per-sample (pull (B,), push (B,)) of every tap: ‖f − c_y‖² and mean_{j≠y} ‖f − c′_j‖²."""
        out = []
        k = self.num_classes
        for f, c, cp in zip(taps, self.pull_prototypes, self.push_prototypes):
            dtype = torch.promote_types(f.dtype, c.dtype)
            f, c, cp = f.to(dtype), c.to(dtype), cp.to(dtype)
            pull = (f - c[y]).pow(2).sum(1).clamp(DIST_MIN, DIST_MAX)
            others = 1.0 - F.one_hot(y, k).to(dtype)
            push = (squared_distances(f, cp) * others).sum(1) / (k - 1)
            out.append((pull, push))
        return out

    def conformity_sums(self, taps: list[torch.Tensor], y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(Σ_l mean_i pull_l, Σ_l mean_i push_l): the training terms of all taps at once.

        A squared distance over concatenated vectors is the sum of the per-tap squared distances, so
        the taps' features and prototypes are concatenated and every layer is done in one pass
        (the same values as ``conformity_terms`` summed; the 1e-12 / 1e12 safety clamp then applies
        to the summed distance). On a small network this keeps deep supervision from costing more
        kernel launches than the network itself.
        """
        f = torch.cat(taps, 1)
        dtype = torch.promote_types(f.dtype, self.pull_prototypes[0].dtype)
        f = f.to(dtype)
        c = torch.cat(list(self.pull_prototypes), 1).to(dtype)
        cp = torch.cat(list(self.push_prototypes), 1).to(dtype)
        pull = (f - c[y]).pow(2).sum(1).clamp(DIST_MIN, DIST_MAX).mean()
        d = squared_distances(f, cp)  # (B, K)
        push = (d.sum(1) - d.gather(1, y[:, None])[:, 0]).mean() / (self.num_classes - 1)
        return pull, push

    def training_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> LossOutput:
        features, z = model.forward_features(x)
        ce = F.cross_entropy(z, y)
        active = self.active
        # In the warm-up the terms are only reported: no graph, no gradient for branches or prototypes.
        with torch.set_grad_enabled(active and torch.is_grad_enabled()):
            taps = self.tap_features(features)
            if active and self.params["proto_init"] == "class_means" and not self._all_seeded:
                self.seed_prototypes(taps, y)
            pull, push = self.conformity_sums(taps, y)
        loss = ce + self.lam_pull * pull - self.lam_push * push if active else ce
        parts = {"loss": loss.detach(), "ce": ce.detach(), "pull": pull.detach(), "push": push.detach()}
        return LossOutput(loss, parts, z)

    def loss(self, z: torch.Tensor, y: torch.Tensor) -> LossOutput:
        """The loss on the logits alone (what is left without features): cross-entropy."""
        ce = F.cross_entropy(z, y)
        return LossOutput(ce, {"loss": ce.detach(), "ce": ce.detach()}, z)

    @torch.no_grad()
    def seed_prototypes(self, taps: list[torch.Tensor], y: torch.Tensor) -> None:
        """proto_init="class_means": set the pull and push prototypes of every class present in the
        batch and not seeded yet to the class's mean tap feature (spec A6). Called by
        ``training_loss`` on PCL batches until every class is seeded (one sync per such batch)."""
        counts = torch.bincount(y, minlength=self.num_classes)
        new = (counts > 0) & ~self.seeded
        for f, c, cp in zip(taps, self.pull_prototypes, self.push_prototypes):
            onehot = F.one_hot(y, self.num_classes).to(f.dtype)
            means = (onehot.T @ f.detach()) / counts.clamp_min(1)[:, None].to(f.dtype)
            c.data[new] = means[new].to(c.dtype)
            cp.data[new] = means[new].to(cp.dtype)
        self.seeded |= new
        self._all_seeded = bool(self.seeded.all())

    # --- the prototype step -----------------------------------------------------------------------
    def before_step(self) -> None:
        for p in list(self.pull_prototypes) + list(self.push_prototypes):
            p.grad = None

    @torch.no_grad()
    def after_step(self, z: torch.Tensor, y: torch.Tensor) -> None:
        """Divide each prototype gradient by its term's weight, then step the prototype SGDs (spec §1.7):
        c ← c − lr_pull·∂pull/∂c and c′ ← c′ + lr_push·∂push/∂c′ (ascent: the push term enters with −)."""
        if not self.active:
            return
        pull_opt, push_opt = self.prototype_optimisers()
        for weight, opt in ((self.lam_pull, pull_opt), (self.lam_push, push_opt)):
            params = opt.param_groups[0]["params"]
            if weight > 0 and any(p.grad is not None for p in params):
                for p in params:
                    if p.grad is not None:
                        p.grad.div_(weight)
                opt.step()
            for p in params:
                p.grad = None

    # --- prediction, attacks, views -----------------------------------------------------------------
    def nearest_prototype(self, features: list[torch.Tensor], layer: int = -1) -> torch.Tensor:
        """PCL Eq. 7: argmin_j ‖f^l − c^l_j‖ on supervised depth ``layer`` (−1 the deepest). (B,) labels."""
        f = self.tap_features(features)[layer]
        c = self.pull_prototypes[layer]
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
        return {f"layer {layer} (d={f.shape[1]})": (f, self.pull_prototypes[i].detach())
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
        if len(self.pull_prototypes):
            c = self.pull_prototypes[-1].detach().float()
            gaps = torch.cdist(c, c)[~torch.eye(len(c), dtype=torch.bool, device=c.device)]
            out["mean_norm_prototype"] = float(c.norm(dim=1).mean())
            out["mean_prototype_distance"] = float(gaps.mean())
        return out


def _same(optimiser: torch.optim.Optimizer, params: list[torch.Tensor]) -> bool:
    held = optimiser.param_groups[0]["params"]
    return len(held) == len(params) and all(a is b for a, b in zip(held, params))
