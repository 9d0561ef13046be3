"""The package is the library: what `import hiddenmix` loads, no import cycle, and the private torch APIs it relies on
(`hiddenmix/_compat.py`), each checked so that a torch release that changes one fails here, by name."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hiddenmix import _compat

PACKAGE = Path(__file__).resolve().parents[1] / "hiddenmix"


def test_import_hiddenmix_loads_none_of_the_scripts_dependencies():
    code = (
        "import hiddenmix, sys; "
        "print(sorted(m for m in ('matplotlib', 'yaml', 'datasets', 'sklearn') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def _imports(path: Path) -> set[str]:
    """The package modules `path` imports at run time (a `TYPE_CHECKING` block is not run)."""
    tree = ast.parse(path.read_text())
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            skipped |= {id(n) for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module and id(node) not in skipped:
            found.add(node.module.split(".")[0])
    return found


def test_the_package_has_no_import_cycle():
    graph = {p.stem: _imports(p) for p in PACKAGE.glob("*.py")}
    graph["metrics"] = _imports(PACKAGE / "metrics" / "__init__.py")

    def reaches(start: str, target: str, seen: set) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == target or (nxt not in seen and reaches(nxt, target, seen | {nxt})):
                return True
        return False

    cycles = sorted(m for m in graph if m != "__init__" and reaches(m, m, {m}))
    assert cycles == []


def test_no_module_of_the_package_is_much_over_400_lines():
    sizes = {p.name: len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert max(sizes.values()) <= 420, sorted(sizes.items(), key=lambda kv: -kv[1])[:3]


# ---------------------------------------------------------------------------------------------- private torch APIs
def test_in_backward_is_true_only_while_autograd_runs_a_backward():
    seen = []

    class Probe(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            seen.append(("forward", _compat.in_backward()))
            return x * 2

        @staticmethod
        def backward(ctx, grad):
            seen.append(("backward", _compat.in_backward()))
            return grad * 2

    Probe.apply(torch.ones(2, requires_grad=True)).sum().backward()
    assert seen == [("forward", False), ("backward", True)] and not _compat.in_backward()


def test_standard_gamma_draws_from_the_generator_it_is_given():
    alpha = torch.full((2, 20000), 2.0)
    a = _compat.standard_gamma(alpha, torch.Generator().manual_seed(0))
    b = _compat.standard_gamma(alpha, torch.Generator().manual_seed(0))
    c = _compat.standard_gamma(alpha, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert abs(float(a.mean()) - 2.0) < 0.05 and abs(float(a.var()) - 2.0) < 0.1  # Gamma(2, 1): mean 2, variance 2


def test_assert_on_device_passes_silently_and_fails_with_the_message():
    _compat.assert_on_device(torch.tensor(True), "never raised")
    with pytest.raises(RuntimeError, match="the message it was given"):
        _compat.assert_on_device(torch.tensor(False), "the message it was given")


def test_check_on_device_raises_a_value_error_on_the_cpu():
    _compat.check_on_device(torch.tensor([True, True]), "never raised")
    with pytest.raises(ValueError, match="one row is wrong"):
        _compat.check_on_device(torch.tensor([True, False]), "one row is wrong")


def test_dir_lists_the_lazy_names_and_the_version_is_the_packages_metadata():
    import importlib.metadata
    import re

    import hiddenmix

    names = dir(hiddenmix)
    for name in ("MixupTrainer", "MixupTrainingArguments", "MixingNotAppliedError", "save_mixed_grid"):
        assert name in names and getattr(hiddenmix, name) is not None
    assert set(hiddenmix.__all__) <= set(names)
    declared = re.search(r'^version = "(.+)"$', (PACKAGE.parent / "pyproject.toml").read_text(), re.M).group(1)
    assert hiddenmix.__version__ == importlib.metadata.version("hiddenmix") == declared
