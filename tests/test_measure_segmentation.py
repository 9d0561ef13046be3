"""scripts/measure_segmentation.py: its scores on hand-made cases, and a short paired run end to end."""

import json

import measure_segmentation as seg
import pytest
import torch


class Fixed(torch.nn.Module):
    """A 'model' whose logits put all mass on the given label maps (at half resolution, as SegFormer's are)."""

    def __init__(self, maps):
        super().__init__()
        self.maps = maps

    def forward(self, pixel_values):
        start = int(pixel_values[0, 0, 0, 0])  # the images carry their own index
        maps = self.maps[start : start + len(pixel_values)]
        logits = torch.nn.functional.one_hot(maps, seg.CLASSES).permute(0, 3, 1, 2).float() * 10
        return type("Out", (), {"logits": logits[..., ::2, ::2]})()


def test_scores_are_one_for_a_perfect_segmenter_and_count_each_class_alike():
    maps = torch.zeros(4, 8, 8, dtype=torch.long)
    maps[:, 2:6, 2:6] = 3  # one digit class, 16 of 64 pixels
    images = torch.arange(4.0)[:, None, None, None].expand(4, 1, 8, 8)
    perfect = seg.score(Fixed(maps), images, maps)
    assert perfect["pixel_accuracy"] == pytest.approx(1.0)
    # all background: 75 % of the pixels right, but the digit class has IoU 0
    wrong = seg.score(Fixed(torch.zeros_like(maps)), images, maps)
    assert wrong["pixel_accuracy"] == pytest.approx(0.75)
    assert wrong["miou_digits"] == pytest.approx(0.0) and wrong["miou"] < perfect["miou"]


def test_the_label_maps_are_the_inked_pixels_labelled_with_their_digit():
    images, maps, digits = seg.digit_maps(size=16)
    assert images.shape[1:] == (1, 16, 16) and maps.shape[1:] == (16, 16)
    ink = images[:, 0] > 0.25
    assert torch.equal(maps[~ink], torch.zeros_like(maps[~ink]))
    assert torch.equal(maps[0][ink[0]].unique(), torch.tensor([digits[0] + 1]))


@pytest.mark.slow
def test_a_short_paired_run_writes_its_table_and_every_run(tmp_path):
    results = seg.main(["--seeds", "0", "1", "--max_steps", "2", "--settings", "no-mix", "pixel-cutmix",
                        "--output_dir", str(tmp_path)])  # fmt: skip
    assert set(results) == {"no-mix", "pixel-cutmix"} and set(results["no-mix"]) == {0, 1}
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["command"].endswith("--output_dir " + str(tmp_path))
    assert any(line.startswith("| pixel-cutmix | 2 | ") for line in saved["table"])
    assert "\n".join(saved["table"]) in (tmp_path / "report.md").read_text()
    for runs in results.values():
        for metrics in runs.values():
            assert {"pixel_accuracy", "miou", "miou_digits", "final_train_loss"} <= set(metrics)
            assert 0 <= metrics["miou"] <= 1 and 0 <= metrics["pixel_accuracy"] <= 1


def test_the_paired_differences_need_the_baseline():
    with pytest.raises(SystemExit):
        seg.main(["--settings", "pixel-cutmix"])
