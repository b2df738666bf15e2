"""A preset's own objective constants: tuned to its data set, overridable, and gone elsewhere."""
import pytest

from engine.__main__ import build_config, parser
from engine.config import PRESET_PARAMS, ObjectiveSpec, TrainConfig, preset, preset_params
from engine.objectives import get_objective_class

QUICK_MAT = PRESET_PARAMS["quick"]["mat"]


def mat_params(config: TrainConfig) -> dict:
    return next(o.params for o in config.objectives if o.name == "mat")


def test_the_quick_preset_sets_mats_bibo_for_digits_and_nothing_else():
    config = preset("quick", ("ce", "mat", "gccs"))
    defaults = get_objective_class("mat").defaults()
    assert mat_params(config) == defaults | QUICK_MAT
    assert QUICK_MAT["beta"] != defaults["beta"] and QUICK_MAT["bibo_eps"] != defaults["bibo_eps"]
    # the other objectives keep their papers' defaults
    for spec in config.objectives:
        if spec.name != "mat":
            assert spec.params == get_objective_class(spec.name).defaults()
    # a run id names the constants it trained with
    assert config.run_id(config.objectives[1]) != TrainConfig(objectives=(ObjectiveSpec("mat"),)).run_id(
        ObjectiveSpec("mat"))


def test_another_data_set_keeps_the_defaults():
    assert preset_params("quick", "mat", "mnist") == {}
    assert preset_params("quick", "mat", "digits") == QUICK_MAT
    assert preset_params(None, "mat") == {} and preset_params("quick", "ce") == {}
    assert mat_params(preset("quick", ("mat",), dataset="mnist")) == get_objective_class("mat").defaults()


@pytest.mark.parametrize("argv,beta,eps", [
    (["--objective", "mat"], QUICK_MAT["beta"], QUICK_MAT["bibo_eps"]),
    (["--objective", "mat", "--param", "mat.beta=6"], 6.0, QUICK_MAT["bibo_eps"]),
    (["--objective", "mat", "--param", "bibo_eps=0.3"], QUICK_MAT["beta"], 0.3),
    (["--objective", "mat", "--dataset", "mnist"], 6.0, 0.3),
])
def test_command_line_applies_the_preset_then_the_params(argv, beta, eps):
    params = mat_params(build_config(parser().parse_args(["train", *argv])))
    assert (params["beta"], params["bibo_eps"]) == (beta, eps)
