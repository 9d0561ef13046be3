"""scripts/train_vit.py end to end on tiny ViTs: every mixing method, every data source, the YAML configs, and bad
input refused before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs" / "vit").glob("*.yaml"))


import train_vit  # noqa: E402  (scripts/ is on the test path)

# A 2-layer, 32-wide ViT for 3 optimizer steps on 128 images: seconds per run, still every code path of a real one.
TINY = [
    "--hidden_size", "32", "--num_hidden_layers", "2", "--num_attention_heads", "2", "--intermediate_size", "64",
    "--max_steps", "3", "--per_device_train_batch_size", "16", "--max_train_samples", "128",
    "--max_eval_samples", "64", "--disable_tqdm", "true", "--logging_steps", "1",
]  # fmt: skip
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # a 17-token model runs as fast on one thread, and leaves the other core to whatever else runs on the machine
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run(out: Path, *args: str) -> tuple[dict, dict]:
    results = train_vit.main(["--output_dir", str(out), *TINY, *args])
    return results, json.loads((out / "results.json").read_text())


def digit_images(count: int, classes: int) -> list[tuple[Image.Image, int]]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    rows = [i for i in range(len(digits.target)) if digits.target[i] < classes][:count]
    return [(Image.fromarray(np.uint8(digits.images[i] * 15)), int(digits.target[i])) for i in rows]


def image_folder(root: Path, splits: dict[str, dict[str, int]], *, rgb_size: int | None = None) -> Path:
    """`root/<split>/<label>/<k>.png` with `count` digit images per label (RGB and resized when `rgb_size`)."""
    images = digit_images(200, 10)
    for split, labels in splits.items():
        for label, count in labels.items():
            folder = root / split / label if split else root / label
            folder.mkdir(parents=True)
            for k, (image, _) in enumerate(images[:count]):
                if rgb_size is not None:
                    image = image.convert("RGB").resize((rgb_size, rgb_size))
                image.save(folder / f"{k}.png")
    return root


# ---------------------------------------------------------------------------------------------- end to end
METHODS = {
    "none": ["--enabled", "false"],
    "input": ["--mixup_alpha", "0.8", "--cutmix_alpha", "1.0", "--switch_prob", "0.5"],
    "embeddings": ["--mixup_alpha", "0", "--cutmix_alpha", "1.0"],  # patch-token CutMix
    "hidden": ["--mixup_alpha", "0.4", "--cutmix_alpha", "0", "--layers", "0", "1"],
}


@pytest.mark.parametrize("method", list(METHODS))
def test_each_method_trains_on_digits_and_writes_both_runs(tmp_path, method):
    out = tmp_path / "out"
    site = [] if method == "none" else ["--site", method]
    results, written = run(out, *site, *METHODS[method])
    runs = ["no-mix"] + ([] if method == "none" else [f"{method}-mix"])
    assert list(results) == runs
    assert written["results"] == json.loads(json.dumps(results))  # what main returns is what it wrote
    for metrics in results.values():
        assert 0 <= metrics["accuracy"] <= 1 and 0 <= metrics["ece"] <= 1 and metrics["nll"] > 0
    assert (written["train_rows"], written["eval_rows"], written["labels"]) == (128, 64, [str(d) for d in range(10)])
    if method != "none":
        assert written["mix_config"]["site"] == method and written["mix_config"]["enabled"] is True
        # same weights, data and order: a run that did not mix would score exactly like the baseline
        assert results[runs[1]]["nll"] != results["no-mix"]["nll"]
    png = (out / "reliability.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 10_000


def test_test_rows_of_images_are_scored_apart_on_clean_and_shifted_images_and_saved(tmp_path):
    out = tmp_path / "out"
    results, written = run(out, "--enabled", "false", "--eval_test_share", "0.25", "--eval_shifts", "noise:0.3")
    protocol = written["eval_protocol"]
    assert protocol["dev_rows"] + protocol["test_rows"] == 64 and 8 <= protocol["test_rows"] <= 24
    saved = np.load(out / "predictions.npz")
    rows, labels, parts, (probs,) = saved["rows"], saved["labels"], saved["parts"], saved["probs"]
    assert np.all(np.diff(rows) > 0) and rows.max() >= 64  # ids of the evaluation rows as loaded, in order
    assert (parts == "test").sum() == protocol["test_rows"]
    metrics = results["no-mix"]
    for part in ("dev", "test"):
        keep = parts == part
        assert metrics[f"{part}/accuracy"] == pytest.approx((probs[keep].argmax(-1) == labels[keep]).mean())
        assert f"{part}/shift/noise:0.3/accuracy" in metrics
    with pytest.raises(ValueError, match=r"eval_dedup=True matches the rows' text, and the data has columns"):
        run(tmp_path / "refused", "--eval_dedup", "true")
    assert not (tmp_path / "refused").exists()


def test_an_rgb_imagefolder_is_resized_converted_and_split(tmp_path):
    data = image_folder(tmp_path / "folder", {"": {"cat": 10, "dog": 10, "owl": 10}}, rgb_size=12)
    out = tmp_path / "out"
    results, written = run(out, "--dataset", str(data), "--site", "input")
    assert list(results) == ["no-mix", "input-mix"]
    assert written["labels"] == ["cat", "dog", "owl"]
    assert (written["train_rows"], written["eval_rows"]) == (24, 6)  # stratified 20 % held out
    assert written["image"]["size"] == [8, 8] and written["image"]["num_channels"] == 3  # 12x12 RGB -> 8x8, 3


def test_a_saved_dataset_with_its_own_columns_and_splits(tmp_path):
    import datasets

    images = digit_images(60, 3)
    part = lambda rows: datasets.Dataset.from_dict(  # noqa: E731
        {"img": [im for im, _ in rows], "digit": [f"d{y}" for _, y in rows]},
        features=datasets.Features({"img": datasets.Image(), "digit": datasets.Value("string")}),
    )
    datasets.DatasetDict({"train": part(images[:45]), "validation": part(images[45:])}).save_to_disk(tmp_path / "ds")
    results, written = run(
        tmp_path / "out", "--dataset", str(tmp_path / "ds"), "--image_column", "img", "--label_column", "digit",
        "--site", "hidden", "--mixup_alpha", "0.4", "--cutmix_alpha", "0",
    )  # fmt: skip
    assert written["labels"] == ["d0", "d1", "d2"]
    assert (written["train_rows"], written["eval_rows"]) == (45, 15)  # the given validation split, not a new one
    assert written["image"]["num_channels"] == 1  # grey PNGs: a 1-channel ViT


def test_a_local_pretrained_vit_gets_a_new_head_and_its_own_image_size_and_statistics(tmp_path):
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    config = ViTConfig(image_size=16, patch_size=4, num_channels=3, hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=2, intermediate_size=64, num_labels=5)  # fmt: skip
    ViTForImageClassification(config).save_pretrained(tmp_path / "vit")
    stats = {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}
    (tmp_path / "vit" / "preprocessor_config.json").write_text(json.dumps(stats))
    results, written = run(
        tmp_path / "out", "--model_name_or_path", str(tmp_path / "vit"), "--site", "embeddings",
        "--mixup_alpha", "0", "--cutmix_alpha", "1.0",
    )  # fmt: skip
    assert list(results) == ["no-mix", "embeddings-mix"]
    # 8x8 grey digits -> the checkpoint's 16x16 RGB, normalised with its statistics; 5-class head -> 10 classes
    image = written["image"]
    assert (image["size"], image["num_channels"]) == ([16, 16], 3)
    assert (image["mean"], image["std"]) == (stats["image_mean"], stats["image_std"])
    assert written["labels"] == [str(d) for d in range(10)] and written["model"] == str(tmp_path / "vit")


def test_image_to_tensor_converts_channels_resizes_and_scales():
    grey = Image.fromarray(np.full((4, 6), 255, dtype=np.uint8))
    x = train_vit.image_to_tensor(grey, (8, 8), 3)
    assert x.shape == (3, 8, 8) and x.dtype == torch.float32 and torch.all(x == 1.0)
    array = np.zeros((8, 8, 3), dtype=np.float32)
    array[..., 0] = 0.5  # floats are read as 0..1
    y = train_vit.image_to_tensor(array, (8, 8), 1)
    assert y.shape == (1, 8, 8) and 0.1 < float(y[0, 0, 0]) < 0.2  # luminance of (0.5, 0, 0)


# ---------------------------------------------------------------------------------------------- configs
@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_vit_config_loads(path):
    text = path.read_text()
    assert text.startswith("#")  # says what it does
    _, _, args = train_vit.parse(["--config", str(path)])
    import yaml

    values = yaml.safe_load(text)
    assert args.enabled == values.get("enabled", True) and args.site == values.get("site", "input")
    assert args.output_dir == values["output_dir"]  # the file beats the script's own default output_dir
    for key in ("mixup_alpha", "cutmix_alpha"):
        if key in values:
            assert getattr(args, key) == values[key]


def test_a_config_is_applied_and_the_command_line_overrides_it(tmp_path):
    config = ROOT / "configs" / "vit" / "hidden_mixup.yaml"
    out = tmp_path / "out"
    results, written = run(out, "--config", str(config), "--layers", "1", "--learning_rate", "0.01")
    assert list(results) == ["no-mix", "hidden-mix"]
    mix = written["mix_config"]
    assert (mix["site"], mix["mixup_alpha"], mix["cutmix_alpha"]) == ("hidden", 0.4, 0.0)  # from the file
    assert mix["layers"] == [1]  # the file says [0, 1, 2]; the command line wins
    argv = ["--config", str(config), "--learning_rate", "0.01", "--output_dir", "x"]
    _, _, training = train_vit.parse(argv)
    assert (training.learning_rate, training.output_dir, training.num_train_epochs) == (0.01, "x", 15)


# ---------------------------------------------------------------------------------------------- bad input
def _saved(path: Path, train: dict, validation: dict | None = None) -> Path:
    import datasets

    features = datasets.Features({"image": datasets.Image(), "label": datasets.Value("string")})
    parts = {"train": datasets.Dataset.from_dict(train, features=features)}
    if validation is not None:
        parts["validation"] = datasets.Dataset.from_dict(validation, features=features)
    datasets.DatasetDict(parts).save_to_disk(path)
    return path


BAD = {
    "missing-image-column": (
        lambda tmp: ["--image_column", "picture"],
        r"image_column='picture' is not a column of dataset='builtin:digits'; its columns are \['image', 'label'\]",
    ),
    "missing-label-column": (
        lambda tmp: ["--label_column", "target"],
        r"label_column='target' is not a column of dataset='builtin:digits'; its columns are \['image', 'label'\]",
    ),
    "unknown-eval-label-imagefolder": (
        lambda tmp: ["--dataset", str(image_folder(tmp / "f", {"train": {"a": 3, "b": 3}, "validation": {"c": 2}}))],
        r"evaluation split .* has labels \['c'\] that are not in the training label set \['a', 'b'\]",
    ),
    "unknown-eval-label-saved": (
        lambda tmp: [
            "--dataset",
            str(
                _saved(
                    tmp / "s",
                    {"image": [im for im, _ in digit_images(4, 2)], "label": ["a", "b", "a", "b"]},
                    {"image": [im for im, _ in digit_images(2, 2)], "label": ["a", "z"]},
                )
            ),
        ],
        r"has labels \['z'\] that are not in the training label set \['a', 'b'\]",
    ),  # fmt: skip
    "empty-saved-dataset": (
        lambda tmp: ["--dataset", str(_saved(tmp / "s", {"image": [], "label": []}))],
        r"is an empty dataset: its split 'train' has no row",
    ),
    "empty-folder": (
        lambda tmp: ["--dataset", str((tmp / "empty").mkdir() or tmp / "empty")],
        r"is an empty dataset: a folder with no image file",
    ),
    "unknown-config-key": (
        lambda tmp: [
            "--config",
            str((tmp / "c.yaml").write_text("site: input\nmixup_alpah: 0.3\n") and tmp / "c.yaml"),
        ],
        r"unknown key 'mixup_alpah'; did you mean 'mixup_alpha'\?",
    ),  # fmt: skip
    "unknown-site": (
        lambda tmp: ["--site", "pixels"],
        r"argument --site: invalid choice: 'pixels' \(choose from 'input', 'embeddings', 'hidden'\)",
    ),
    "unknown-shift": (
        lambda tmp: ["--eval_shifts", "typos:0.1"],
        r"eval_shifts holds 'typos:0.1'; allowed: NAME:STRENGTH with NAME in \['noise', 'occlude'\]",
    ),
    "missing-model": (
        lambda tmp: ["--model_name_or_path", str(tmp / "no-such-model")],
        r"model_name_or_path='.*no-such-model' cannot be loaded .*; allowed: a local folder with a config.json",
    ),
    "patch-size": (
        lambda tmp: ["--patch_size", "3"],
        r"patch_size=3 does not divide image_size=8",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_refused_before_anything_is_written(tmp_path, case):
    make_args, match = BAD[case]
    args = make_args(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=match):
        train_vit.main(["--output_dir", str(out), *TINY, *args])
    assert not out.exists()


def test_an_output_dir_holding_another_run_is_refused_unless_overwrite(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text('{"earlier": "run"}')
    with pytest.raises(ValueError, match=r"output_dir='.*out' already holds another run \(\['results.json'\]\).*"
                                         r"--overwrite_output_dir true"):  # fmt: skip
        train_vit.main(["--output_dir", str(out), *TINY, "--enabled", "false"])
    assert [p.name for p in out.iterdir()] == ["results.json"]
    assert (out / "results.json").read_text() == '{"earlier": "run"}'
    # asked to, it runs and replaces the results
    train_vit.main(["--output_dir", str(out), *TINY, "--enabled", "false", "--overwrite_output_dir", "true"])
    assert "no-mix" in json.loads((out / "results.json").read_text())["results"]
