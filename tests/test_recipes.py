"""Named recipes: what they hold, that they are the settings their grid measured, and every way to load one."""

import importlib.util
import sys
from pathlib import Path

import pytest
import yaml
from test_trainer import make_dataset, tiny_model, training_args

from hiddenmix import RECIPES, MixConfig, Recipe, get_recipe
from hiddenmix.trainer import MixScheduleCallback, MixupTrainer

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"_recipe_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


text_script = _script("train_text_classifier")
vit_script = _script("train_vit")


# ---------------------------------------------------------------------------------------------- the recipes
@pytest.mark.parametrize("name", sorted(RECIPES))
def test_each_recipe_is_the_setting_its_grid_measured(name):
    # A recipe must be exactly a setting of its grid, so the report's numbers are the recipe's numbers.
    recipe = get_recipe(name)
    grid = yaml.safe_load((ROOT / recipe.grid).read_text())
    setting = dict(grid["settings"][recipe.setting])
    assert grid["common"].get("recipe") == "none"  # the grid's runs take nothing from a recipe
    site = setting.pop("method")
    trainer_part = {k: setting.pop(k, 0.0) for k in ("clean_loss_weight", "mix_off_for_last")}
    script = vit_script if grid.get("script", "").endswith("train_vit.py") else text_script
    script_defaults = getattr(script, "MIX_DEFAULTS", {})
    assert recipe.mix_config() == MixConfig(**{**script_defaults, **setting, "site": site})
    assert (recipe.clean_loss_weight, recipe.mix_off_for_last) == tuple(trainer_part.values())
    # measured over 3 seeds, with its no-mix baselines, on every dataset of the grid that runs it
    sections = (ROOT / grid["output_dir"] / "report.md").read_text().split("\n## ")[1:]
    for dataset, spec in grid["datasets"].items():
        if recipe.setting in spec.get("settings", grid["settings"]):
            (section,) = [s for s in sections if s.startswith(dataset + "\n")]
            assert f"| {recipe.setting} | 3 |" in section and "| no-mix | 3 |" in section, dataset


def test_from_recipe_gives_the_recipes_mix_config_with_overrides():
    config = MixConfig.from_recipe("text-classifier")
    assert config == get_recipe("text-classifier").mix_config()
    assert MixConfig.from_recipe("vit", prob=0.25).prob == 0.25
    with pytest.raises(ValueError, match=r"MixConfig has no field\(s\) \['alpha'\]"):
        MixConfig.from_recipe("vit", alpha=1.0)
    with pytest.raises(ValueError, match=r"recipe='deit' is not a hiddenmix recipe; choose one of \['text-class"):
        MixConfig.from_recipe("deit")


def test_recipes_cannot_be_changed_in_place():
    recipe = get_recipe("vit")
    with pytest.raises(TypeError):
        recipe.mix["prob"] = 1.0
    with pytest.raises(AttributeError):
        recipe.clean_loss_weight = 2.0
    with pytest.raises(TypeError):
        RECIPES["mine"] = recipe


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(mix={"mixup_alpha": -1}), r"MixConfig.mixup_alpha=-1 must be"),
        (dict(mix={"alpha": 1}), r"unexpected keyword argument 'alpha'"),
        (dict(mix={}, clean_loss_weight=-0.5), r"Recipe 'x': clean_loss_weight=-0.5 must be a finite number >= 0"),
        (dict(mix={}, mix_off_for_last=1.5), r"Recipe 'x': mix_off_for_last=1.5 must be in \[0, 1\]"),
    ],
)
def test_bad_recipes_are_refused(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        Recipe(name="x", use="test", **kwargs)


# ---------------------------------------------------------------------------------------------- the trainer
def test_trainer_applies_a_recipes_mixing_and_trainer_part(tmp_path):
    recipe = get_recipe("text-classifier")
    trainer = MixupTrainer(model=tiny_model(), args=training_args(tmp_path), train_dataset=make_dataset(8),
                           recipe="text-classifier")  # fmt: skip
    assert trainer.mixer.config == recipe.mix_config()
    assert trainer.clean_loss_weight == recipe.clean_loss_weight
    trainer = MixupTrainer(model=tiny_model(), args=training_args(tmp_path), recipe="text-classifier",
                           clean_loss_weight=0.0)  # fmt: skip
    assert trainer.clean_loss_weight == 0.0  # given explicitly: beats the recipe's


def test_a_trainer_given_no_mixing_uses_the_recipe_for_its_models_kind(tmp_path):
    from transformers import ViTConfig, ViTForImageClassification

    text = MixupTrainer(model=tiny_model(), args=training_args(tmp_path))
    assert text.mixer.config == get_recipe("text-classifier").mix_config()
    assert text.clean_loss_weight == get_recipe("text-classifier").clean_loss_weight
    config = ViTConfig(image_size=8, patch_size=4, num_channels=1, hidden_size=16, num_hidden_layers=2,
                       num_attention_heads=2, intermediate_size=32)  # fmt: skip
    vit = ViTForImageClassification(config)
    trainer = MixupTrainer(model=vit, args=training_args(tmp_path))
    assert trainer.mixer.config == get_recipe("vit").mix_config() and trainer.mixer.config.site == "input"


def test_trainer_adds_the_schedule_of_a_recipe_that_turns_mixing_off_at_the_end(tmp_path, monkeypatch):
    import hiddenmix.trainer

    late = Recipe(name="late-off", use="test", mix={"mixup_alpha": 0.2}, mix_off_for_last=0.25)
    monkeypatch.setattr(hiddenmix.trainer, "get_recipe", lambda name: late)
    trainer = MixupTrainer(model=tiny_model(), args=training_args(tmp_path), recipe="late-off")
    (schedule,) = [c for c in trainer.callback_handler.callbacks if isinstance(c, MixScheduleCallback)]
    assert schedule.mixer is trainer.mixer and schedule.schedule.off_for_last == 0.25
    assert trainer.mixer.config.mixup_alpha == 0.2


def test_trainer_refuses_a_recipe_with_another_mix_config(tmp_path):
    with pytest.raises(ValueError, match="one of mix_config=, mixer=, recipe=; got mix_config and recipe"):
        MixupTrainer(model=tiny_model(), args=training_args(tmp_path), mix_config=MixConfig(), recipe="vit")
    with pytest.raises(ValueError, match="recipe='nope' is not a hiddenmix recipe"):
        MixupTrainer(model=tiny_model(), args=training_args(tmp_path), recipe="nope")


# ---------------------------------------------------------------------------------------------- the scripts
def test_the_text_script_uses_its_recipe_unless_told_otherwise(tmp_path):
    recipe = get_recipe("text-classifier")
    script, run, mix, _ = text_script.parse([])
    assert run.recipe == "text-classifier" and script.method == recipe.mix.get("site", "hidden")
    assert mix == recipe.mix_config() and run.clean_loss_weight == recipe.clean_loss_weight
    _, run, mix, _ = text_script.parse(["--recipe", "none"])
    assert run.recipe == "none" and run.clean_loss_weight == 0.0 and mix == MixConfig()
    # the YAML file beats the recipe, the command line beats both
    cfg = tmp_path / "c.yaml"
    cfg.write_text("clean_loss_weight: 0.5\nmixup_alpha: 0.2\n")
    _, run, mix, _ = text_script.parse(["--config", str(cfg), "--mixup_alpha", "0.3"])
    assert (run.clean_loss_weight, mix.mixup_alpha) == (0.5, 0.3)
    # a recipe named in the YAML file, or as --recipe=NAME
    cfg.write_text("recipe: none\n")
    assert text_script.parse(["--config", str(cfg)])[1].clean_loss_weight == 0.0
    script, run, mix, _ = text_script.parse(["--recipe=vit", "--method", "hidden"])
    assert (script.method, mix.prob, mix.cutmix_alpha) == ("hidden", 0.5, 1.0)


def test_the_vit_script_uses_its_recipe_and_the_deit_defaults_without_one():
    script, run, mix, _ = vit_script.parse([])
    # the scripts mix where --method says (the site of the MixConfig they run is set from it)
    assert run.recipe == "vit" and script.method == "input"
    assert mix.replace(site=script.method) == get_recipe("vit").mix_config()
    _, _, mix, _ = vit_script.parse(["--recipe", "none"])
    assert mix == MixConfig(**vit_script.MIX_DEFAULTS)


def test_scripts_refuse_an_unknown_recipe():
    with pytest.raises(ValueError, match=r"recipe='nope' is not a hiddenmix recipe; choose one of"):
        text_script.parse(["--recipe", "nope"])
    with pytest.raises(ValueError, match="--recipe needs a value"):
        text_script.parse(["--recipe"])
