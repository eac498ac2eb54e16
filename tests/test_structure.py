"""The house rules of DESIGN.md and STYLE.md, checked on the source tree (no imports, just AST).

* no module in mmrec/ over 600 lines;
* no private name imported across modules;
* `mmrec.data` imports nothing from `mmrec.layers` / `mmrec.models`;
* no `condition == "..."` string switches outside the conditioning package;
* the modules that define networks do not import TensorFlow;
* Keras internals are used only in `mmrec/compat.py`.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mmrec"
MAX_LINES = 600

# Modules that define layers and networks: keras.ops only, any backend.
NETWORK_MODULES = [
    "mmrec/formats.py",
    "mmrec/layers/dtypes.py",
    "mmrec/layers/encoders.py",
    "mmrec/layers/fusion.py",
    "mmrec/layers/image_audio_preprocessing.py",
    "mmrec/layers/item_encoder.py",
    "mmrec/layers/sequence.py",
    "mmrec/layers/user.py",
    "mmrec/models/attributes.py",
    "mmrec/models/losses.py",
    "mmrec/models/image_networks.py",
    "mmrec/models/audio_networks.py",
    "mmrec/models/conditioning/base.py",
    "mmrec/models/conditioning/attributes.py",
    "mmrec/models/conditioning/user.py",
    "mmrec/models/conditioning/item.py",
    "mmrec/models/conditioning/explanation.py",
    "mmrec/models/text_networks.py",
]


def modules():
    return sorted(PACKAGE.rglob("*.py"))


def relative(path):
    return path.relative_to(ROOT).as_posix()


def parse(path):
    return ast.parse(path.read_text(), filename=str(path))


def imported_modules(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module, [alias.name for alias in node.names], node.lineno


def test_no_module_is_over_600_lines():
    long = {relative(p): n for p in modules() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these by idea: {long}"


def test_no_private_name_is_imported_across_modules():
    found = []
    for path in modules():
        for module, names, line in imported_modules(parse(path)):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            hidden = [part for part in module.split(".") if part.startswith("_")]
            if module.startswith("mmrec") and (private or hidden):
                found.append(f"{relative(path)}:{line} from {module} import {private}")
    assert not found, found


def test_data_knows_nothing_of_layers_or_models():
    found = [
        f"{relative(path)}:{line} imports {module}"
        for path in sorted((PACKAGE / "data").rglob("*.py"))
        for module, _, line in imported_modules(parse(path))
        if module.startswith(("mmrec.layers", "mmrec.models"))
    ]
    assert not found, found


def _is_condition(node):
    name = node.id if isinstance(node, ast.Name) else getattr(node, "attr", None)
    return name == "condition"


def _condition_switches(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            has_string = any(
                isinstance(s, ast.Constant) and isinstance(s.value, str) for s in sides
            )
            if has_string and any(_is_condition(s) for s in sides):
                yield node.lineno


def test_no_condition_string_switches_outside_the_conditioning_package():
    conditioning = PACKAGE / "models" / "conditioning"
    found = [
        f"{relative(path)}:{line}"
        for path in modules() + sorted((ROOT / "benchmarks").glob("*.py"))
        if conditioning not in path.parents
        for line in _condition_switches(parse(path))
    ]
    assert not found, f"give the varying thing a class (mmrec.models.conditioning): {found}"


def test_the_switch_detector_finds_a_switch():
    tree = ast.parse('if model.condition == "user":\n    pass\nif "text" != condition: pass')
    assert list(_condition_switches(tree)) == [1, 3]


@pytest.mark.parametrize("module", NETWORK_MODULES)
def test_network_modules_do_not_import_tensorflow(module):
    tree = parse(ROOT / module)
    tf = [
        f"{module}:{line} imports {name}"
        for name, _, line in imported_modules(tree)
        if name.split(".")[0] in ("tensorflow", "tensorflow_text", "tensorflow_hub")
    ]
    assert not tf, tf


KERAS_PRIVATE = ("_flatten_layers", "_symbolic_build", "_distribute_strategy")


def test_keras_internals_are_used_only_in_the_compat_module():
    found = []
    for path in modules():
        if path == PACKAGE / "compat.py":
            continue
        tree = parse(path)
        found += [
            f"{relative(path)}:{line} imports {name}"
            for name, _, line in imported_modules(tree)
            if name.startswith("keras.src")
        ]
        found += [
            f"{relative(path)}:{node.lineno} uses .{node.attr}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and node.attr in KERAS_PRIVATE
        ]
    assert not found, f"put Keras internals in mmrec/compat.py: {found}"
