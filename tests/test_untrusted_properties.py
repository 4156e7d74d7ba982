"""Property: whatever structure a stranger's file holds, the readers answer with a MegrezError or a value.

Hypothesis throws random JSON/YAML structures at the manifest, config, preprocessor, recipe and devices-file
readers, both whole documents and a valid document with one field replaced (which reaches the deep checks).
Nothing else (TypeError, KeyError, ZeroDivisionError, RecursionError, ...) may come out.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from megrez_mobile.bundle import Manifest
from megrez_mobile.config import MegrezConfig, PreprocessorConfig
from megrez_mobile.errors import MegrezError
from megrez_mobile.export.recipe import Recipe
from megrez_mobile.harness.devices import load_devices_file

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

scalars = (st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)


def _paths(value, prefix=()):
    """Every path to a value inside a nested document."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _paths(item, prefix + (i,))


def _replaced(document, path, value):
    if not path:
        return value
    out = copy.deepcopy(document)
    target = out
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return out


def _mutations(document):
    paths = list(_paths(document))
    return st.tuples(st.sampled_from(paths), json_values).map(lambda pv: _replaced(document, *pv))


def _only_megrez_errors(read, document) -> None:
    try:
        read(document)
    except MegrezError:
        pass


@pytest.fixture(scope="module")
def documents(bundle_8da4w, tiny_checkpoint):
    return {"manifest": json.loads((bundle_8da4w / "manifest.json").read_text()),
            "config": json.loads((tiny_checkpoint / "config.json").read_text()),
            "preprocessor": json.loads((tiny_checkpoint / "preprocessor_config.json").read_text()),
            "recipe": Recipe.load("xnnpack-8da4w").to_dict()}


READERS = {
    "manifest": lambda d: Manifest.from_dict(d, "manifest.json"),
    "config": lambda d: MegrezConfig.from_dict(d, "config.json"),
    "preprocessor": lambda d: PreprocessorConfig.from_dict(d),
    "recipe": lambda d: Recipe.from_dict(d, "recipe.yaml"),
}


@pytest.mark.parametrize("reader", list(READERS))
@SETTINGS
@given(data=st.data())
def test_random_documents_give_only_megrez_errors(documents, reader, data):
    document = data.draw(json_values | _mutations(documents[reader]))
    _only_megrez_errors(READERS[reader], document)


@pytest.mark.parametrize("reader", list(READERS))
def test_the_valid_documents_still_read(documents, reader):
    READERS[reader](documents[reader])  # the mutation test starts from documents that pass


devices_entries = st.lists(st.sampled_from(["local", "adb", "ssh:pi@board", "adb:emulator-5554"]) | json_values
                           | st.dictionaries(st.sampled_from(["device", "identity_file", "ssh_options",
                                                              "remote_cache", "python", "x"]), json_values,
                                             max_size=4), max_size=4)


@SETTINGS
@given(entries=devices_entries | json_values)
def test_random_devices_files_give_only_megrez_errors(tmp_path, entries):
    path = Path(tmp_path) / "devices.yaml"
    path.write_text(yaml.safe_dump(entries, allow_unicode=True))
    _only_megrez_errors(load_devices_file, path)
