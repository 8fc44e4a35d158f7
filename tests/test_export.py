"""Architecture spec: round trip, validation, and a built module that reproduces the dense layer."""
import json

import numpy as np
import pytest
import torch
from test_structure_readout import camera_patches, magnitude_prune, planted_conv

from structlearn.export.spec import build_module, conv_stage, make_spec, pool_stage, validate_spec
from structlearn.structure.conv import conv_from_filters


def test_spec_from_planted_conv_rebuilds_the_dense_layer():
    kernels, rows, clean, where, sign = planted_conv(seed=0)
    rows = magnitude_prune(rows, clean.ne(0).float().mean().item())
    ro = conv_from_filters(rows)
    spec = make_spec(ro.input_shape, [conv_stage(ro.to_dict()), {"type": "activation", "fn": "abs"}],
                     {"run": "planted"})
    spec = json.loads(json.dumps(spec))  # plain JSON round trip
    net = build_module(spec, [ro.kernels])
    x = camera_patches(64, 24, seed=1).float()
    y = net[0](x[:, None])  # the conv stage
    cov = ro.covered
    conv_units = y[:, ro.channel[cov], ro.out_y[cov], ro.out_x[cov]] * (ro.sign * ro.scale)[cov]
    dense_units = x.reshape(64, -1) @ rows.reshape(rows.shape[0], -1)[cov].T
    err = ((conv_units - dense_units).norm() / dense_units.norm()).detach()
    assert float(err) <= 0.05 and ro.channels == 8 and spec["stages"][0]["kernel_size"] == [5, 5]
    assert net(x[:, None]).min() >= 0  # abs activation


def test_module_shapes_follow_the_spec():
    spec = make_spec((24, 24), [
        {"type": "conv2d", "out_channels": 8, "kernel_size": [5, 5], "stride": [2, 2], "padding": [0, 0]},
        {"type": "activation", "fn": "abs"},
        pool_stage({"kernel_size": [2, 2], "stride": [2, 2], "purity": 1.0}),
        {"type": "dense", "out_features": 10},
    ])
    net = build_module(spec)
    assert net(torch.randn(3, 1, 24, 24)).shape == (3, 10)  # 24 -> 10 (conv) -> 5 (pool) -> 200 -> 10


@pytest.mark.parametrize("mutate, msg", [
    (lambda s: s.update(format="other"), "not a structlearn architecture spec"),
    (lambda s: s.update(version=99), "version"),
    (lambda s: s["stages"].append({"type": "attention"}), "allowed: conv2d, shared_conv, pool, activation, dense"),
    (lambda s: s["stages"][0].update(stride=[0, 2]), "stride"),
    (lambda s: s["stages"].append({"type": "activation", "fn": "gelu"}), "allowed: abs, log_abs, relu, identity"),
    (lambda s: s["stages"].append({"type": "shared_conv", "out_channels": 0, "kernel_size": [3, 3], "units": 4}),
     "out_channels must be a positive integer"),
    (lambda s: s["stages"].append({"type": "dense", "out_features": 3, "masked": "yes"}), "masked='yes'"),
    (lambda s: s.update(head={"num_classes": 0}), "head="),
    (lambda s: s["stages"].append({"type": "activation", "fn": "group_l2"}), "group"),
])
def test_bad_specs_are_named(mutate, msg):
    """The validator names the problem, and the published JSON Schema refuses the same spec."""
    import jsonschema

    from structlearn.export.spec import schema

    spec = make_spec((12, 12), [{"type": "conv2d", "out_channels": 2, "kernel_size": [3, 3],
                                 "stride": [1, 1], "padding": [0, 0]}])
    jsonschema.validate(spec, schema())  # the good one passes both
    mutate(spec)
    with pytest.raises(ValueError, match=msg):
        validate_spec(spec)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(spec, schema())


def test_the_schema_is_a_valid_schema_and_ships():
    import jsonschema

    from structlearn.export.spec import SCHEMA_PATH, schema

    jsonschema.Draft202012Validator.check_schema(schema())
    assert SCHEMA_PATH.name == "architecture.schema.json"


def test_kernels_larger_than_input_or_mismatched_are_refused():
    spec = make_spec((4, 4), [{"type": "conv2d", "out_channels": 2, "kernel_size": [5, 5],
                               "stride": [1, 1], "padding": [0, 0]}])
    with pytest.raises(ValueError, match="empty output"):
        build_module(spec)
    spec["input"]["shape"] = [8, 8]
    with pytest.raises(ValueError, match="kernels shape"):
        build_module(spec, [torch.zeros(3, 5, 5)])


def test_export_command_on_a_finished_run(tmp_path):
    from structlearn.cli import main
    from structlearn.config import dump_config, load_config
    from structlearn.testing import trainer_in

    cfg = load_config(None, ["data.grid=[2,2]", "data.tile=[4,4]", "data.n_train=800", "data.n_test=100",
                             "layers.0.n_units=16", "layers.0.steps=5", "layers.0.prune.finetune_steps=0",
                             "wandb=disabled"])
    (tmp_path / "config.yaml").write_text(dump_config(cfg))
    assert main(["export", str(tmp_path)]) == 2  # unfinished run: a clear error, no spec
    assert not (tmp_path / "architecture.json").exists()
    trainer_in(cfg, tmp_path).run()
    assert main(["export", str(tmp_path)]) == 0
    spec = json.loads((tmp_path / "architecture.json").read_text())
    validate_spec(spec)
    import jsonschema

    from structlearn.export.spec import schema

    jsonschema.validate(spec, schema())  # what export writes passes the published schema
    st = spec["stages"][0]
    assert spec["version"] == 2 and spec["input"]["shape"] == [8, 8] and st["type"] == "shared_conv"
    assert st["units"] == 16 and st["evidence"]["coverage"] == 1.0  # every unit is covered
    kernels = torch.load(tmp_path / "architecture_kernels.pt")["kernels"]
    net = build_module(spec, kernels).double()
    # the exported network is the shared-kernel layer: its responses are W_hat x, whose distance to
    # the dense layer W x on held-out inputs is the response error the stage records
    from structlearn.runs import Run

    run = Run(tmp_path)
    x = run.data.test[:100].double().reshape(-1, 1, 8, 8)
    dense = x.flatten(1) @ run.weights(0).double().T
    got = net(x).detach()
    err = float((got - dense).norm() / dense.norm())
    assert err == pytest.approx(st["evidence"]["response_error"], rel=1e-6, abs=1e-9)
    with pytest.raises(ValueError, match="needs its kernels and unit placements"):
        build_module(spec)
    assert main(["export", str(tmp_path), "--sharing", "strict", "--out", str(tmp_path / "strict.json")]) == 0
    strict = json.loads((tmp_path / "strict.json").read_text())
    assert strict["stages"][0]["type"] in ("conv2d", "dense")
    net = build_module(strict, torch.load(tmp_path / "strict_kernels.pt")["kernels"], num_classes=3)
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 3)


def test_onnx_and_torch_export_of_a_discovered_network(tmp_path):
    """`structlearn export --format onnx`: onnxruntime matches PyTorch to 1e-5 at two batch sizes
    (the batch is dynamic); torch.export of the same module gives the same outputs."""
    import onnxruntime as ort

    from structlearn.cli import main
    from structlearn.config import dump_config, load_config
    from structlearn.testing import trainer_in

    cfg = load_config(None, ["data.grid=[2,2]", "data.tile=[4,4]", "data.n_train=800", "data.n_test=100",
                             "layers=[{n_units: 16, steps: 5, prune: {finetune_steps: 0}}, {n_units: 6, steps: 5}]",
                             "wandb=disabled"])
    (tmp_path / "config.yaml").write_text(dump_config(cfg))
    trainer_in(cfg, tmp_path).run()
    assert main(["export", str(tmp_path), "--format", "onnx"]) == 0
    assert main(["export", str(tmp_path)]) == 0
    spec = json.loads((tmp_path / "architecture.json").read_text())
    assert [s["type"] for s in spec["stages"]] == ["shared_conv", "activation", "dense"]
    net = build_module(spec, torch.load(tmp_path / "architecture_kernels.pt")["kernels"]).float().eval()
    sess = ort.InferenceSession(str(tmp_path / "architecture.onnx"))
    for b in (1, 5):
        x = torch.randn(b, 1, 8, 8, generator=torch.Generator().manual_seed(b))
        want = net(x).detach().numpy()
        got = sess.run(None, {"x": x.numpy()})[0]
        assert got.shape == (b, 6)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    ep = torch.export.export(net, (torch.zeros(2, 1, 8, 8),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    x = torch.randn(3, 1, 8, 8)
    torch.testing.assert_close(ep.module()(x), net(x))


@pytest.mark.parametrize("c, n", [(2, 300), (40, 40)], ids=["convolution", "windows"])
def test_onnx_of_an_rgb_shared_conv_stage(tmp_path, c, n):
    """A shared_conv stage on RGB input (colour kernels (C, 3, k, k)) exports to ONNX in both of
    SharedConv's forms; onnxruntime matches PyTorch to 1e-5 at two batch sizes."""
    import onnxruntime as ort

    from structlearn.export.onnx import write_onnx

    g = torch.Generator().manual_seed(c)
    k = 5
    sk = {"kernels": torch.randn(c, 3, k, k, generator=g), "channel": torch.randint(c, (n,), generator=g),
          "top": torch.randint(-(k - 1), 12, (n,), generator=g), "left": torch.randint(-(k - 1), 12, (n,), generator=g),
          "gain": torch.rand(n, generator=g)}
    spec = make_spec((3, 12, 12), [{"type": "shared_conv", "out_channels": c, "kernel_size": [k, k], "units": n},
                                   {"type": "activation", "fn": "abs"}])
    net = build_module(spec, [sk]).eval()
    assert net[0].use_windows == (c == 40)
    write_onnx(spec, tmp_path / "rgb.onnx", [sk])
    sess = ort.InferenceSession(str(tmp_path / "rgb.onnx"))
    for b in (1, 6):
        x = torch.randn(b, 3, 12, 12, generator=g)
        np.testing.assert_allclose(sess.run(None, {"x": x.numpy()})[0], net(x).detach().numpy(), rtol=1e-5, atol=1e-5)


def test_discovered_net_follows_timms_model_interface(tmp_path):
    """A timm-style check of the exported classifier (timm itself needs torchvision, which does
    not install beside this torch build): output shape, no NaN, every parameter gets a gradient,
    reset_classifier, features-only with num_classes=0, forward_head(pre_logits)."""
    import structlearn_nas
    from structlearn.cli import main
    from structlearn.config import dump_config, load_config
    from structlearn.testing import trainer_in

    cfg = load_config(None, ["data.grid=[2,2]", "data.tile=[4,4]", "data.n_train=800", "data.n_test=100",
                             "layers=[{n_units: 16, steps: 5, prune: {finetune_steps: 0}}, {n_units: 6, steps: 5}]",
                             "wandb=disabled"])
    (tmp_path / "config.yaml").write_text(dump_config(cfg))
    trainer_in(cfg, tmp_path).run()
    assert main(["export", str(tmp_path)]) == 0
    create = structlearn_nas.model_factory(tmp_path / "architecture.json", "tiny")
    assert create.__name__ == "structlearn_tiny"
    net = create(pretrained=True, num_classes=10)
    x = torch.randn(4, 1, 8, 8)
    out = net(x)
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    out.square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert not missing, missing
    assert net.num_features == 6 and net.forward_features(x).shape == (4, 6)
    torch.testing.assert_close(net.forward_head(net.forward_features(x), pre_logits=True), net.forward_features(x))
    net.reset_classifier(3)
    assert net(x).shape == (4, 3) and net.get_classifier().out_features == 3
    assert create(num_classes=0)(x).shape == (4, 6)
    with pytest.raises(ValueError, match="num_classes=-1 out of range"):
        create(num_classes=-1)


@pytest.mark.parametrize("c, n, c_in", [(3, 40, 1), (40, 40, 1), (3, 40, 3), (40, 40, 3)],
                         ids=["shared", "one_kernel_per_unit", "shared_rgb", "one_kernel_per_unit_rgb"])
def test_shared_conv_window_form_equals_the_convolution(c, n, c_in):
    """SharedConv's two forms (convolution + gather, and per-unit k x k windows) give the same
    outputs and the same gradients in float64, with empty units and windows that hang over the
    image border, on one input channel and on RGB (kernels ``(C, 3, k, k)``); the layer picks the
    window form when the convolution would waste cells."""
    from structlearn.export.spec import SharedConv

    g = torch.Generator().manual_seed(0)
    k, h, w = 5, 9, 11
    channel = torch.randint(0, c, (n,), generator=g)
    channel[[3, 17]] = -1  # empty units
    top = torch.randint(-(k - 1), h, (n,), generator=g)
    left = torch.randint(-(k - 1), w, (n,), generator=g)
    shape = (c, k, k) if c_in == 1 else (c, c_in, k, k)
    layer = SharedConv(torch.randn(*shape, generator=g, dtype=torch.float64), channel, top, left,
                       torch.rand(n, generator=g, dtype=torch.float64) + 0.5, (h, w))
    assert layer.use_windows == (c * (h + k - 1) * (w + k - 1) > 4 * n)
    x = torch.randn(6, c_in, h, w, generator=g, dtype=torch.float64)
    outs, grads = [], []
    for windows in (False, True):
        layer.use_windows = windows
        layer.zero_grad()
        y = layer(x)
        (y * torch.arange(n, dtype=torch.float64)).sum().backward()
        outs.append(y.detach())
        grads.append((layer.conv.weight.grad.clone(), layer.gain.grad.clone()))
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-12, atol=1e-12)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert outs[0][:, [3, 17]].abs().max() == 0 and grads[0][1][[3, 17]].abs().max() == 0  # empty stays empty
    # the reference: every unit as an explicit dot product with its zero-padded window
    xp = torch.nn.functional.pad(x, (k - 1,) * 4)
    i = 5
    ref = (xp[:, :, top[i] + k - 1: top[i] + 2 * k - 1, left[i] + k - 1: left[i] + 2 * k - 1]
           * layer.conv.weight[channel[i]]).sum((1, 2, 3)) * layer.gain[i]
    torch.testing.assert_close(outs[1][:, i], ref.detach(), rtol=1e-12, atol=1e-12)


def test_register_timm_goes_through_timms_own_registry(tmp_path):
    """timm.create_model itself cannot run here: timm's layers import torchvision, whose PyPI
    wheels are CUDA builds that do not load beside this CPU torch. So timm's own registry module
    (timm/models/_registry.py of the installed timm, loaded without timm's package __init__)
    takes the registration, and the entrypoint is called the way timm 1.0's create_model calls
    every entrypoint (models/_factory.py: pretrained, pretrained_cfg, pretrained_cfg_overlay,
    cache_dir, then the user's kwargs)."""
    import importlib
    import importlib.util
    import sys
    import types
    from pathlib import Path

    import structlearn_nas
    from structlearn.cli import main
    from structlearn.config import dump_config, load_config
    from structlearn.testing import trainer_in

    root = Path(importlib.util.find_spec("timm").origin).parent  # find_spec does not import timm
    before = set(sys.modules)
    try:
        for name, path in (("timm", root), ("timm.models", root / "models")):
            stub = types.ModuleType(name)
            stub.__path__ = [str(path)]
            sys.modules[name] = stub
        registry = importlib.import_module("timm.models._registry")
        sys.modules["timm.models"].register_model = registry.register_model
        cfg = load_config(None, ["data.grid=[2,2]", "data.tile=[4,4]", "data.n_train=800", "data.n_test=100",
                                 "layers=[{n_units: 16, steps: 5, prune: {finetune_steps: 0}}]", "wandb=disabled"])
        (tmp_path / "config.yaml").write_text(dump_config(cfg))
        trainer_in(cfg, tmp_path).run()
        assert main(["export", str(tmp_path)]) == 0
        name = structlearn_nas.register_timm(tmp_path / "architecture.json", "tiny")
        assert name == "structlearn_tiny" and registry.is_model(name) and name in registry.list_models("structlearn_*")
        create_fn = registry.model_entrypoint(name)
        model = create_fn(pretrained=True, pretrained_cfg=None, pretrained_cfg_overlay=None, cache_dir=None, num_classes=10)
        out = model(torch.randn(2, 1, 8, 8))
        assert out.shape == (2, 10) and torch.isfinite(out).all()
    finally:
        for key in set(sys.modules) - before:
            if key.startswith("timm"):
                del sys.modules[key]
        for key in ("timm", "timm.models"):
            if key not in before:
                sys.modules.pop(key, None)
