"""Named recipes: what they hold, that they are the settings their grid measured, and every way to load one."""

import dataclasses
import re
from pathlib import Path

import pytest
import train_text_classifier as text_script
import train_vit as vit_script
import yaml
from test_trainer import tiny_model

from hiddenmix import RECIPES, MixConfig, MixupTrainer, MixupTrainingArguments, Recipe, get_recipe
from hiddenmix.config import MIX_OPTION_NAMES, TRAINER_MIX_OPTIONS
from hiddenmix.schedule import MixScheduleCallback

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = (*MIX_OPTION_NAMES, *TRAINER_MIX_OPTIONS)


def mixing(args) -> dict:
    return {name: getattr(args, name) for name in OPTIONS}


# ---------------------------------------------------------------------------------------------- the recipes
@pytest.mark.parametrize("name", sorted(RECIPES))
def test_each_recipe_is_the_setting_its_grid_measured(name, tmp_path):
    # A recipe must be exactly a setting of its grid, so the report's numbers are the recipe's numbers.
    recipe = get_recipe(name)
    grid = yaml.safe_load((ROOT / recipe.grid).read_text())
    assert grid["common"].get("recipe") == "none"  # the grid's runs take nothing from a recipe
    script = vit_script if grid.get("script", "").endswith("train_vit.py") else text_script
    # a grid run is the script's defaults, then the setting
    script_mixing = {k: v for k, v in script.DEFAULTS.items() if k in OPTIONS}
    measured = MixupTrainingArguments(
        output_dir=str(tmp_path), **{**script_mixing, **grid["settings"][recipe.setting]}
    )
    assert mixing(MixupTrainingArguments.from_recipe(name, output_dir=str(tmp_path))) == mixing(measured)
    # measured over at least 3 seeds, with its no-mix baselines, on every dataset of the grid that has runs and
    # lists it (an entry the grid holds but has not run yet has no section in the report) ...
    sections = (ROOT / grid["output_dir"] / "report.md").read_text().split("\n## ")[1:]
    measured_on = set()
    for dataset, spec in grid["datasets"].items():
        section = [s for s in sections if s.startswith(dataset + "\n")]
        if section and recipe.setting in spec.get("settings", grid["settings"]):
            for setting in (recipe.setting, "no-mix"):
                seeds = re.search(rf"^\| {re.escape(setting)} \| (\d+) \|", section[0], re.MULTILINE)
                assert seeds and int(seeds.group(1)) >= 3, (dataset, setting)
            measured_on.add(spec["dataset"])
    # ... and a text recipe on both text datasets, an image recipe on the digits
    wanted = {"builtin:digits"} if script is vit_script else {"builtin:twitter-sentiment", "builtin:bbc-news"}
    assert wanted <= measured_on, (name, measured_on)


def test_a_recipes_mix_config_takes_overrides():
    recipe = get_recipe("vit")
    assert recipe.mix_config() == MixConfig(**recipe.arguments)
    assert recipe.mix_config(prob=0.25).prob == 0.25
    with pytest.raises(ValueError, match=r"MixConfig has no field\(s\) \['alpha'\]"):
        recipe.mix_config(alpha=1.0)
    with pytest.raises(ValueError, match=r"recipe='deit' is not a hiddenmix recipe; choose one of \['few-labels'"):
        get_recipe("deit")


def test_recipes_cannot_be_changed_in_place():
    recipe = get_recipe("vit")
    with pytest.raises(TypeError):
        recipe.arguments["prob"] = 1.0
    with pytest.raises(AttributeError):
        recipe.arguments = {}
    with pytest.raises(TypeError):
        RECIPES["mine"] = recipe


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(arguments={"mixup_alpha": -1}), r"MixConfig.mixup_alpha=-1 is not allowed"),
        (dict(arguments={"alpha": 1}), r"Recipe 'x' sets \['alpha'\]; a recipe sets only"),
        (dict(arguments={"learning_rate": 1}), r"Recipe 'x' sets \['learning_rate'\]; a recipe sets only"),
        (dict(arguments={"clean_loss_weight": -0.5}), r"Recipe 'x'.clean_loss_weight=-0.5 is not allowed"),
        (dict(arguments={"mix_off_for_last": 1.5}), r"Recipe 'x'.mix_off_for_last=1.5 is not allowed"),
    ],
    ids=["bad-value", "unknown", "not-a-mixing-option", "clean-loss", "off-for-last"],
)
def test_bad_recipes_are_refused(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        Recipe(name="x", use="test", **kwargs)


# ---------------------------------------------------------------------------------------------- the arguments
def test_arguments_from_a_recipe_hold_its_mixing_and_trainer_options_and_take_overrides(tmp_path):
    recipe = get_recipe("text-classifier")
    args = MixupTrainingArguments.from_recipe("text-classifier", output_dir=str(tmp_path), seed=4)
    assert args.mix_config() == recipe.mix_config(seed=4)
    assert {k: getattr(args, k) for k in recipe.trainer_options()} == dict(recipe.trainer_options())
    assert MixupTrainingArguments.from_recipe("vit", output_dir=str(tmp_path), prob=0.25).prob == 0.25
    with pytest.raises(ValueError, match="recipe='nope' is not a hiddenmix recipe"):
        MixupTrainingArguments.from_recipe("nope", output_dir=str(tmp_path))


def test_a_trainer_given_plain_arguments_uses_the_recipe_for_its_models_kind(tmp_path):
    from transformers import TrainingArguments, ViTConfig, ViTForImageClassification

    plain = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[], seed=0)
    text = MixupTrainer(model=tiny_model(), args=plain)
    assert text.mixer.config == get_recipe("few-labels").mix_config(seed=0)
    assert text.args.clean_loss_weight == 0.0  # one forward per step
    config = ViTConfig(image_size=8, patch_size=4, num_channels=1, hidden_size=16, num_hidden_layers=2,
                       num_attention_heads=2, intermediate_size=32)  # fmt: skip
    trainer = MixupTrainer(model=ViTForImageClassification(config), args=plain)
    assert trainer.mixer.config == get_recipe("vit").mix_config(seed=0) and trainer.mixer.config.site == "input"


def test_trainer_adds_the_schedule_of_arguments_that_turn_mixing_off_at_the_end(tmp_path):
    late = Recipe(name="late-off", use="test", arguments={"mixup_alpha": 0.2, "mix_off_for_last": 0.25})
    args = MixupTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[], **late.arguments)
    trainer = MixupTrainer(model=tiny_model(), args=args)
    (schedule,) = [c for c in trainer.callback_handler.callbacks if isinstance(c, MixScheduleCallback)]
    assert schedule.mixer is trainer.mixer and schedule.schedule.off_for_last == 0.25
    assert trainer.mixer.config.mixup_alpha == 0.2


# ---------------------------------------------------------------------------------------------- the scripts
def test_the_text_script_uses_its_recipe_unless_told_otherwise(tmp_path):
    recipe = get_recipe("few-labels")
    _, run, args = text_script.parse([])
    assert run.recipe == "few-labels"
    assert args.mix_config() == recipe.mix_config(seed=args.seed)
    assert args.clean_loss_weight == recipe.arguments.get("clean_loss_weight", 0.0)
    _, run, args = text_script.parse(["--recipe", "none"])
    assert run.recipe == "none" and args.clean_loss_weight == 0.0 and args.mix_config() == MixConfig(seed=args.seed)
    # the YAML file beats the recipe, the command line beats both
    cfg = tmp_path / "c.yaml"
    cfg.write_text("clean_loss_weight: 0.5\nmixup_alpha: 0.2\n")
    _, run, args = text_script.parse(["--config", str(cfg), "--mixup_alpha", "0.3"])
    assert (args.clean_loss_weight, args.mixup_alpha) == (0.5, 0.3)
    # a recipe named in the YAML file, or as --recipe=NAME
    cfg.write_text("recipe: none\n")
    assert text_script.parse(["--config", str(cfg)])[2].clean_loss_weight == 0.0
    _, _, args = text_script.parse(["--recipe=vit", "--site", "hidden"])
    assert (args.site, args.prob, args.cutmix_alpha) == ("hidden", 0.5, 1.0)


def test_the_vit_script_uses_its_recipe_and_the_deit_defaults_without_one():
    _, run, args = vit_script.parse([])
    assert run.recipe == "vit" and args.mix_config() == get_recipe("vit").mix_config(seed=args.seed)
    _, _, args = vit_script.parse(["--recipe", "none"])
    deit = {k: v for k, v in vit_script.DEFAULTS.items() if k in MIX_OPTION_NAMES}
    assert args.mix_config() == MixConfig(**deit, seed=args.seed)


def test_scripts_refuse_an_unknown_recipe():
    with pytest.raises(ValueError, match=r"recipe='nope' is not a hiddenmix recipe; choose one of"):
        text_script.parse(["--recipe", "nope"])
    with pytest.raises(ValueError, match="--recipe needs a value"):
        text_script.parse(["--recipe"])


def test_the_demo_is_seed_0_of_the_grid_entry_that_measures_it(tmp_path):
    # `make demo` (the text script with configs/text/demo.yaml) prints the few-labels recipe's effect measured by the
    # regimes grid: the grid's twitter-16-demo entry must train exactly what the demo trains.
    import run_experiments

    demo = ROOT / "configs/text/demo.yaml"
    grid = run_experiments.load_grid(str(ROOT / "configs/experiments/regimes.yaml"))
    assert set(run_experiments.seeds_of(grid, "twitter-16-demo")) >= {0, 1, 2}
    recipe = get_recipe(yaml.safe_load(demo.read_text())["recipe"])
    assert recipe.grid == "configs/experiments/regimes.yaml"
    options = {**grid["common"], **run_experiments.dataset_options(grid, "twitter-16-demo"),
               **grid["settings"][recipe.setting], "split_seed": 0}  # fmt: skip
    flags = [*run_experiments.as_flags(options), "--seed", "0", "--output_dir", str(tmp_path / "g")]
    grid_run = text_script.parse(flags)
    demo_run = text_script.parse(["--config", str(demo), "--output_dir", str(tmp_path / "g")])
    # the demo plots, names its recipe, trains the baseline beside it and shows a progress bar
    differs = {"plot", "recipe", "baseline", "disable_tqdm"}
    for grid_part, demo_part in zip(grid_run, demo_run):
        grid_values = {k: v for k, v in dataclasses.asdict(grid_part).items() if k not in differs}
        demo_values = {k: v for k, v in dataclasses.asdict(demo_part).items() if k not in differs}
        assert grid_values == demo_values
