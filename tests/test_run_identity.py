"""A run's id: pinned, the same for settings that train the same run, and every setting declared once
(its flag, its Train page input, its check and its place in the hash come from that declaration)."""
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from engine.__main__ import build_config, parser
from engine.config import DEFAULTS, SETTINGS, ObjectiveSpec, TrainConfig, check_setting, preset, settings_hash
from engine.objectives import ConfigError

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def run_id(config: TrainConfig) -> str:
    return config.run_id(config.objectives[0])


# Ids of runs users have stored: a change to the hash, or a new setting entering it, must not move them.
PINNED = [
    (lambda: preset("quick", ["ce"]), "3bcca5d19715c36c"),
    (lambda: preset("quick", ["gccs"]), "f1246448a0994bd5"),
    (lambda: preset("quick", ["mat"]), "a3978535dfba8d74"),
    (lambda: TrainConfig(), "3bcca5d19715c36c"),
    (lambda: preset("quick", ["ce"], adv_attack="pgd", adv_eps=0.1), "30dd04954ac97852"),
    (lambda: preset("quick", ["gccs"], adv_attack="fgsm"), "a323d237bed544ce"),
    (lambda: preset("quick", ["ce"], optimizer="adam"), "fce4cab4ae4eef1d"),
    (lambda: preset("quick", ["ce"], schedule="step", step_size=10, gamma=0.5), "7d6cef6e866295dc"),
    (lambda: TrainConfig.from_dict(dict(dataset="mnist", model="resnet18", epochs=5,
                                        objectives=(ObjectiveSpec("mmc", {"c_mm": 10.0}),))), "3856fbceabb9e2db"),
    (lambda: preset("quick", ["ce"], init_from="abcdef0123456789", lr=0.001), "2830197da60be7db"),
]


@pytest.mark.parametrize("make, expected", PINNED)
def test_stored_run_ids_are_pinned(make, expected):
    assert run_id(make()) == expected


def test_the_hashed_settings_are_pinned():
    """A new setting must be declared with ``omit_unless`` (or the schema bumped), or every id moves."""
    plain = TrainConfig().run_settings(ObjectiveSpec("ce"))
    assert sorted(plain) == ["batch_size", "dataset", "dropout", "epochs", "gamma", "latent_samples", "lr", "model",
                             "momentum", "objective", "optimizer", "params", "sampler", "schedule", "schema", "seed",
                             "step_size", "weight_decay"]
    adversarial = preset("quick", ["ce"], adv_attack="pgd", init_from="abc").run_settings(ObjectiveSpec("ce"))
    assert sorted(set(adversarial) - set(plain)) == ["adv_attack", "adv_clean_weight", "adv_eps", "adv_loss",
                                                     "adv_step", "adv_steps", "adv_targeted", "init_from"]


@pytest.mark.parametrize("changes, same_as", [
    (dict(optimizer="adam", momentum=0.5), dict(optimizer="adam")),  # Adam has no momentum
    (dict(schedule="cosine", gamma=0.5, step_size=7), dict()),  # only the step schedule decays by them
    (dict(schedule="constant", gamma=0.5), dict(schedule="constant")),
    (dict(adv_attack="fgsm", adv_steps=3, adv_step=0.2), dict(adv_attack="fgsm")),  # FGSM steps once, by ε
    (dict(adv_eps=0.3, adv_clean_weight=0.0), dict()),  # no adversarial training: its settings are unused
    (dict(device="cpu"), dict(device="auto")),  # where it ran is not what it is
    (dict(eval_every=5), dict()),  # how often it was watched neither
    (dict(channels_last=True), dict()),  # nor how its tensors were laid out
    (dict(compile=True), dict()),  # nor whether its forward pass was compiled
    (dict(augment="none"), dict()),  # digits' recipe: no augmentation
    (dict(dataset="cifar10", augment="auto"), dict(dataset="cifar10", augment="crop-flip")),  # CIFAR's recipe
    (dict(dataset="svhn", augment="auto"), dict(dataset="svhn", augment="crop")),  # SVHN's: crops, no mirror
])
def test_settings_without_effect_do_not_change_the_id(changes, same_as):
    assert run_id(preset("quick", ["ce"], **changes)) == run_id(preset("quick", ["ce"], **same_as))


@pytest.mark.parametrize("changes", [dict(momentum=0.5), dict(schedule="step", gamma=0.5),
                                     dict(adv_attack="pgd", adv_steps=3), dict(adv_attack="fgsm", adv_eps=0.1),
                                     dict(latent_samples=500), dict(seed=1), dict(init_from="abc"),
                                     dict(augment="crop"), dict(augment="crop-flip"), dict(precision="bf16")])
def test_settings_with_effect_change_the_id(changes):
    assert run_id(preset("quick", ["ce"], **changes)) != run_id(preset("quick", ["ce"]))


def test_a_datasets_own_augmentation_is_part_of_its_runs_identity():
    svhn = {a: run_id(preset("quick", ["ce"], dataset="svhn", augment=a)) for a in ("auto", "none", "crop", "crop-flip")}
    assert svhn["auto"] == svhn["crop"] and len({svhn["none"], svhn["crop"], svhn["crop-flip"]}) == 3
    assert preset("quick", ["ce"], dataset="cifar10").run_settings(ObjectiveSpec("ce"))["augment"] == "crop-flip"


def test_the_hash_refuses_values_it_cannot_write_stably():
    assert settings_hash({"a": [1, 2.5, "x", True, None, {"b": 1}]}) == settings_hash({"a": (1, 2.5, "x", True, None,
                                                                                        {"b": 1})})
    for bad, where in [({"a": {1, 2}}, "settings.a"), ({"p": {"lam": float("nan")}}, "settings.p.lam"),
                       ({"a": [object()]}, r"settings.a\[0\]"), ({"a": {1: 2}}, "settings.a")]:
        with pytest.raises(ConfigError, match=where):
            settings_hash(bad)


def test_every_setting_is_checked_against_its_declaration():
    for name, s in SETTINGS.items():
        assert check_setting(name, DEFAULTS[name]) == DEFAULTS[name]
        bad = "nope" if s.choices or s.kind is not str else 5
        if s.kind in (int, float) and not s.choices:
            bad = s.high * 2 + 1
        with pytest.raises(ConfigError) as err:
            check_setting(name, bad)
        assert name in str(err.value) and s.label in str(err.value) and s.bounds() in str(err.value)
    with pytest.raises(ConfigError, match=r"learning rate \(lr\) must be > 0 and ≤ 10; got 0"):
        check_setting("lr", 0)
    with pytest.raises(ConfigError, match=r"batch size \(batch_size\) must be an integer; got 1.5"):
        check_setting("batch_size", 1.5)


def test_every_setting_has_a_flag_that_reaches_the_config():
    flags = {a.dest: a for a in parser()._subparsers._group_actions[0].choices["train"]._actions}
    assert set(SETTINGS) <= set(flags)
    changed = {"dataset": "mnist", "model": "mlp", "epochs": "3", "batch_size": "50", "optimizer": "adam", "lr": "0.5",
               "momentum": "0.5", "schedule": "step", "step_size": "4", "gamma": "0.3", "weight_decay": "0.1",
               "dropout": "0.4", "seed": "9", "sampler": "balanced", "device": "cpu", "latent_samples": "20",
               "eval_every": "2", "augment": "crop", "precision": "bf16",
               "adv_attack": "pgd", "adv_eps": "0.2", "adv_step": "0.05", "adv_steps": "3", "adv_loss": "ce",
               "adv_clean_weight": "0.25", "init_from": "abc"}
    assert set(changed) | {"adv_targeted", "channels_last", "compile"} == set(SETTINGS)
    argv = ["train"] + [x for name, v in changed.items() for x in ("--" + name.replace("_", "-"), v)] + \
        ["--adv-targeted", "--channels-last", "--compile"]
    config = build_config(parser().parse_args(argv))
    for name, text in changed.items():
        assert getattr(config, name) == SETTINGS[name].kind(text), name
    assert config.adv_targeted is True and config.channels_last is True and config.compile is True
    assert all(not flags[n].default for n in SETTINGS)  # unset flags leave the preset's value


def test_every_setting_has_an_input_on_the_train_page_with_its_label_and_bounds():
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("pages/train.py")
    at.run()
    assert not at.exception
    widgets = {w.label: w for kind in ("number_input", "selectbox", "checkbox", "text_input") for w in at.get(kind)}
    for name, s in SETTINGS.items():
        if name == "seed":
            assert "seeds" in widgets  # one or several seeds, one job each
            continue
        assert s.label in widgets, name
        widget = widgets[s.label]
        if s.kind in (int, float) and not s.choices:
            assert s.bounds() in widget.help and widget.max == s.high, name
