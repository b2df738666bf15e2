"""The one shape every training objective has (../shared/spec/objectives.md).

An objective is an ``nn.Module`` so that its fixed geometry (simplex vertices, centres) lives in
buffers and travels with the checkpoint. The training loop only ever calls the methods below, so it
never needs to know which objective it runs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn


class ConfigError(ValueError):
    """Bad settings: the message names the field and the allowed values."""


def fp32(z: torch.Tensor) -> torch.Tensor:
    """Half-precision latents (autocast) promoted to fp32: the objectives' statistics, distances of
    size ~C² and log-determinants need it; other dtypes pass unchanged."""
    return z.float() if z.dtype in (torch.float16, torch.bfloat16) else z


@dataclass(frozen=True)
class Param:
    """One constant of an objective, as the UI and the command line present it."""

    name: str
    default: Any
    help: str
    choices: tuple | None = None
    minimum: float | None = None  # inclusive
    maximum: float | None = None  # inclusive
    exclusive_minimum: bool = False

    @property
    def kind(self) -> type:
        return type(self.default)

    def validate(self, value: Any, objective: str) -> Any:
        field_name = f"{objective}.{self.name}"
        if self.choices is not None:
            if value not in self.choices:
                raise ConfigError(f"{field_name} must be one of {', '.join(map(str, self.choices))}; got {value!r}")
            return value
        if self.kind is bool:
            if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
                return value.lower() in ("true", "1", "yes")
            if not isinstance(value, bool):
                raise ConfigError(f"{field_name} must be true or false; got {value!r}")
            return value
        try:
            number = self.kind(value) if not isinstance(value, bool) else None
        except (TypeError, ValueError):
            number = None
        if number is None or (self.kind is int and float(value) != int(float(value))):
            raise ConfigError(f"{field_name} must be a{'n integer' if self.kind is int else ' number'}; got {value!r}")
        if number != number or number in (float("inf"), float("-inf")):
            raise ConfigError(f"{field_name} must be a finite number; got {value!r}")
        low_ok = self.minimum is None or (number > self.minimum if self.exclusive_minimum else number >= self.minimum)
        high_ok = self.maximum is None or number <= self.maximum
        if not (low_ok and high_ok):
            low = "" if self.minimum is None else f"{'>' if self.exclusive_minimum else '≥'} {self.minimum}"
            high = "" if self.maximum is None else f"≤ {self.maximum}"
            raise ConfigError(f"{field_name} must be {' and '.join(p for p in (low, high) if p)}; got {value!r}")
        return number


@dataclass
class LossOutput:
    """``loss`` is what the optimiser minimises; ``parts`` are the named terms for the live charts
    (detached, at the scale the paper reports them); ``z`` the clean latents of the batch (set by
    ``training_loss``; the loop counts training accuracy on them)."""

    loss: torch.Tensor
    parts: dict[str, torch.Tensor] = field(default_factory=dict)
    z: torch.Tensor | None = None


class Objective(nn.Module):
    """Base class. Subclasses set ``name``, ``title``, ``citation``, ``PARAMS`` and implement ``loss``.

    Arguments:
        num_classes (int): K, the number of classes.
        **params: the objective's constants (see ``PARAMS``); validated here.
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    citation: ClassVar[str] = ""
    PARAMS: ClassVar[tuple[Param, ...]] = ()
    # Parts plotted on the live loss chart, in this order.
    PART_NAMES: ClassVar[tuple[str, ...]] = ("loss",)
    # The adaptive attack objective also takes ``z_clean=`` (the clean batch's latents, a constant):
    # attacks and adversarial training then pass it (engine.attacks.AdaptivePGD). Default: no.
    uses_clean_latents: ClassVar[bool] = False

    def __init__(self, num_classes: int, **params: Any):
        super().__init__()
        if int(num_classes) < 2:
            raise ConfigError(f"num_classes must be ≥ 2; got {num_classes!r}")
        self.num_classes = int(num_classes)
        self.params = self.validate_params(params)

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {p.name: p.default for p in cls.PARAMS}

    @classmethod
    def validate_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        known = {p.name: p for p in cls.PARAMS}
        unknown = sorted(set(params) - set(known))
        if unknown:
            allowed = ", ".join(known) or "none"
            raise ConfigError(f"unknown constant {unknown[0]!r} for objective {cls.name!r}; allowed: {allowed}")
        values = cls.defaults()
        for key, value in params.items():
            values[key] = known[key].validate(value, cls.name)
        return values

    @classmethod
    def param_warnings(cls, num_classes: int, params: dict[str, Any]) -> list[str]:
        """Settings that are legal but dubious (e.g. GCCS separability); shown, never fatal."""
        return []

    # --- the shared shape ------------------------------------------------------------------
    @property
    def latent_dim(self) -> int:
        """Size of the latent mapper the model must end in."""
        return self.num_classes

    def loss(self, z: torch.Tensor, y: torch.Tensor) -> LossOutput:
        raise NotImplementedError

    # --- hooks of the training loop (defaults: a plain loss on z) --------------------------------
    def attach(self, model: nn.Module) -> None:
        """Called once, before the optimiser is built, with the (CPU) model: an objective whose parts
        depend on the backbone (PCL's auxiliary branches on ``model.feature_dims``) builds them here."""

    def training_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> LossOutput:
        """The loss of one training batch. Objectives that need the model itself (MAT's input
        gradients and inner PGD, PCL's intermediate features) override this; it must set ``z``."""
        z = model(x)
        out = self.loss(z, y)
        out.z = z
        return out

    def shared_parameters(self):
        """Parameters the main optimiser trains together with the model (default: all of ours)."""
        return self.parameters()

    def before_step(self) -> None:
        """Called before the backward pass (e.g. zero the gradients of the objective's own optimisers)."""

    def after_step(self, z: torch.Tensor, y: torch.Tensor) -> None:
        """Called after the main optimiser step with the batch's detached latents: updates that are
        not gradient steps of the main optimiser (Wen et al.'s centre update, PCL's prototype steps)."""

    def set_epoch(self, epoch: int) -> None:
        """Called at the start of every epoch (1-based): schedules such as PCL's CE warm-up."""

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """Scores whose argmax is the prediction; what library attacks run on."""
        return z

    def predict(self, z: torch.Tensor) -> torch.Tensor:
        return self.logits(z).argmax(dim=1)

    def test_predictions(self, model: nn.Module, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Predictions on a test split whose latents ``z = model(x)`` are known. Objectives whose
        decision needs more than z (PCL's nearest prototype of an inner layer) override this."""
        return self.predict(z)

    def adaptive_objective(self, z: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        """Per-sample value a defence-aware white-box attacker maximises (untargeted when target is None).
        An objective with ``uses_clean_latents`` takes ``z_clean`` (the clean latents, detached) too."""
        logits = self.logits(z)
        if target is None:
            return nn.functional.cross_entropy(logits, y, reduction="none")
        return -nn.functional.cross_entropy(logits, target, reduction="none")

    def views(self, model: nn.Module, x: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
        """Extra spaces the latent views can show besides z: name -> (features of x (N, d), centres
        (K, d) or None). PCL shows each supervised layer with its prototypes. Default: none."""
        return {}

    def geometry(self) -> torch.Tensor | None:
        """Class centres (K, latent_dim) the latent views draw, or None (views use class means)."""
        return None

    def diagnostics(self, z: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """Per-epoch numbers that reveal degenerate training (computed on the test latents)."""
        return {"mean_norm_z": float(z.norm(dim=1).mean())}
