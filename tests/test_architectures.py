"""A fast part of scripts/check_architectures.py (the full run over every architecture writes docs/coverage.md): each
architecture either mixes correctly or is refused with its reason, never silently."""

import pytest
from check_architectures import SITES, check

from common.tiny import IMAGE_TYPES, TEXT_TYPES

# (model type, task): what it must do at every site, and a phrase of the reason when it is refused
EXPECTED = {
    ("bert", "text"): ("mixed", "union carried"),
    ("albert", "text"): ("mixed", "union carried"),  # one shared layer group, addressed by call count
    ("deberta-v2", "text"): ("mixed", "union carried"),  # outer-product masks
    ("llama", "text"): ("mixed", "union carried"),  # decoder-only, left padded
    ("gpt2", "text"): ("mixed", "union carried"),
    ("fnet", "text"): ("mixed", "take no attention mask"),
    ("gemma3", "text"): ("mixed", "language_model.layers"),  # a multimodal config: the text tower's layers
    ("bart", "text"): ("refused", "is an encoder-decoder"),
    ("funnel", "text"): ("refused", "did not run as a module"),  # its layer list holds lists the forward iterates
    ("xlnet", "text"): ("refused", "changes the sequence length or batch layout"),  # [T, B, D] layers
    ("reformer", "text"): ("refused", "reversible layers carry two hidden streams"),
    ("vit", "image"): ("mixed", "at "),
    ("swin", "image"): ("mixed", "at "),
    ("clip", "image"): ("mixed", "at "),
}


@pytest.mark.parametrize(("model_type", "task"), list(EXPECTED), ids=[m for m, _ in EXPECTED])
def test_an_architecture_mixes_correctly_or_is_refused_with_its_reason(model_type, task):
    outcome, phrase = EXPECTED[(model_type, task)]
    for site in SITES[task]:
        result = check(model_type, task, site)
        assert (result.outcome, phrase in result.detail) == (outcome, True), (site, result)


@pytest.mark.parametrize(("model_type", "site"), [("resnet", "input"), ("resnet", "hidden"), ("siglip2", "input")])
def test_image_models_without_a_token_stack_or_with_patch_inputs(model_type, site):
    result = check(model_type, "image", site)
    # a CNN mixes pixels, has no layer stack to mix after; siglip2 takes flattened patches, not [B, C, H, W] pixels
    expected = {("resnet", "input"): "mixed", ("resnet", "hidden"): "refused", ("siglip2", "input"): "refused"}
    assert result.outcome == expected[(model_type, site)], result
    assert (
        result.outcome != "refused" or "could not find the layer stack" in result.detail or "rank 4" in result.detail
    )


def test_the_coverage_table_is_committed_with_no_silent_outcome():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "coverage.md").read_text()
    assert "0 silent or failed" in text and "| FAILED |" not in text
    listed = {
        line.split("|")[1].strip()
        for line in text.splitlines()
        if line.startswith("| ") and "| model type" not in line
    }
    assert set(TEXT_TYPES) | set(IMAGE_TYPES) <= listed  # every type of the installed transformers has a row
