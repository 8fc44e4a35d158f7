"""Supervised use of a discovered layer: the classifiers it is compared with, their training,
and the information plane recorded while they train.

    from structlearn.supervised import VARIANTS, variant_spec, fit
    spec, kernels = variant_spec("random_mask", first_layer, num_classes=10, generator=g)
    result = fit(DiscoveredNet(spec, kernels, num_classes=10), task, epochs=30, seed=0)

Every variant is an architecture spec built by :func:`structlearn.export.build_module` and
wrapped in :class:`structlearn.export.model.DiscoveredNet`, so the baselines go through the same
code as the exported network.
"""
from structlearn.supervised.nets import VARIANTS, FirstLayer, effective_params, matched_cnn_channels, variant_spec
from structlearn.supervised.train import FitResult, Task, fit, prepare_task

__all__ = ["VARIANTS", "FirstLayer", "FitResult", "Task", "effective_params", "fit", "matched_cnn_channels",
           "prepare_task", "variant_spec"]
