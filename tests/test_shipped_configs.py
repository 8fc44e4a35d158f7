"""Every discover config the project ships (``experiments/*.yaml`` and the packaged
``structlearn/configs``) loads and builds every layer's objective with its parameters and its
fine-tuning parameters, so a user's first run of one does not fail on a typo after minutes of
data preparation. (The search, sweep, ReduNet and random-network files have their own schemas
and tests.)"""
import dataclasses
import math
from pathlib import Path

import pytest
import torch
import yaml

from structlearn.build import check_layers
from structlearn.config import RunConfig, load_config

ROOT = Path(__file__).resolve().parents[1]
FIELDS = {f.name for f in dataclasses.fields(RunConfig)}
FILES = sorted([*ROOT.glob("experiments/*.yaml"), *ROOT.glob("structlearn/configs/*.yaml")])
DISCOVER = [f for f in FILES if "layers" in (d := yaml.safe_load(f.read_text())) and set(d) <= FIELDS]


def test_the_discover_configs_are_found():
    names = {f.name for f in DISCOVER}
    assert {"mosaic_sparse.yaml", "whole_images.yaml", "whole_images_64.yaml", "mosaic_color.yaml"} <= names


@pytest.mark.parametrize("path", DISCOVER, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_shipped_config_builds_its_layers(path):
    cfg = load_config(path)
    shape = tuple(cfg.data.input_shape)
    check_layers(cfg, math.prod(shape), shape, torch.float32)
