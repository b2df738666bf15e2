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


def test_fmnist_quick_is_the_gccs_recipe_on_fashion_mnist_for_five_epochs():
    from engine.config import PRESET_NOTES, PRESETS

    quick, fmnist = PRESETS["quick"], PRESETS["fmnist-quick"]
    assert fmnist["dataset"] == "fashion-mnist" and fmnist["epochs"] == 5
    assert {k: v for k, v in fmnist.items() if k not in ("dataset", "epochs")} == \
        {k: v for k, v in quick.items() if k not in ("dataset", "epochs")}
    assert preset_params("fmnist-quick", "mat") == {}  # MAT keeps its defaults there
    assert "2 CPU cores" in PRESET_NOTES["fmnist-quick"] and "2 CPU cores" in PRESET_NOTES["quick"]
    config = build_config(parser().parse_args(["train", "--preset", "fmnist-quick", "--objective", "gccs"]))
    assert config.dataset == "fashion-mnist" and config.epochs == 5 and config.model == "cnn"


@pytest.mark.slow
@pytest.mark.skipif(not __import__("pathlib").Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="Debian's dataset-fashion-mnist is not installed (make test installs it where apt is)")
def test_one_epoch_of_fmnist_quick_trains_on_the_real_data(tmp_path, monkeypatch):
    """The real 60,000 images, unpacked from the Debian package into an empty data folder."""
    from engine.train import train_job

    monkeypatch.setenv("SIMPLEX_DATA_DIR", str(tmp_path))
    (record,) = train_job(preset("fmnist-quick", ["ce"], epochs=1, device="cpu"))
    assert record["final"]["test_acc"] > 0.8 and not record["diverged"]
    assert record["class_names"][0] == "T-shirt/top" and len(record["history"]) == 1


@pytest.mark.parametrize("name, dataset, augmentation", [
    ("mnist-paper", "mnist", "none"), ("fmnist-paper", "fashion-mnist", "none"), ("svhn-paper", "svhn", "crop"),
    ("cifar10-paper", "cifar10", "crop-flip"), ("cifar100-paper", "cifar100", "crop-flip")])
def test_the_paper_presets_are_the_gccs_recipe_as_printed(name, dataset, augmentation):
    from engine.config import PRESET_NOTES

    config = preset(name, ["gccs"])
    assert (config.dataset, config.model, config.epochs, config.batch_size, config.lr) == (dataset, "resnet18", 1800,
                                                                                          200, 0.01)
    assert (config.optimizer, config.schedule, config.weight_decay, config.dropout) == ("sgd", "cosine", 1e-3, 0.2)
    hashed = config.run_settings(config.objectives[0])
    assert hashed.get("augment", "none") == augmentation
    note = PRESET_NOTES[name]
    assert "1,800 epochs" in note and "2 CPU cores" in note and "GPU" in note
    assert ("Shake-Shake" in note) == (name == "cifar100-paper")  # the one architecture it cannot follow


def test_a_pcl_warm_up_that_covers_every_epoch_is_said_and_fmnist_quick_keeps_one_epoch_of_it():
    from engine.config import preset, warnings_for

    short = preset("quick", ["ce", "pcl"], epochs=5)  # PCL's 10 CE-only epochs cover all 5
    assert any("covers all 5 epochs" in w and "CE only" in w for w in warnings_for(short, 10))
    assert not any("covers all" in w for w in warnings_for(preset("quick", ["pcl"]), 10))
    fmnist = preset("fmnist-quick", ["pcl"])
    assert fmnist.objectives[0].params["warmup_epochs"] == 1 and not any("covers all" in w
                                                                          for w in warnings_for(fmnist, 10))
