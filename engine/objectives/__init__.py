"""Objective registry: id -> class. Every objective has the shape of ``base.Objective``."""
from __future__ import annotations

from .base import ConfigError, LossOutput, Objective, Param
from .ce import CrossEntropy
from .center import CenterLoss
from .gccs import GCCS
from .isce import ISCE
from .mat import MAT
from .mmc import MMC
from .pcl import PCL

OBJECTIVES: dict[str, type[Objective]] = {cls.name: cls for cls in (CrossEntropy, GCCS, MMC, ISCE, MAT, PCL, CenterLoss)}


def get_objective_class(name: str) -> type[Objective]:
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise ConfigError(f"objective must be one of {', '.join(OBJECTIVES)}; got {name!r}") from None


def build_objective(name: str, num_classes: int, params: dict | None = None) -> Objective:
    return get_objective_class(name)(num_classes, **(params or {}))


__all__ = ["OBJECTIVES", "ConfigError", "LossOutput", "Objective", "Param", "build_objective", "get_objective_class"]
