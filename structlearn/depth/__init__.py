"""Depth from entropy: the entropy of each layer's codes, the gain of each layer, the Optuna
search that stops adding layers once the gain stalls, and the random-network study.

    from structlearn.depth import entropy_profile
    prof = entropy_profile([x_white, codes_1, codes_2])   # (m, d_l) held-out samples each
    prof.gains, prof.chosen_depth(0.05)

Modules: :mod:`~structlearn.depth.gain` (measure and normalisation), ``space`` (search
config), ``study`` (trials, workers, search.json), ``storage`` (SQLite / journal / URL, stale
trials), ``plots``, ``random_nets``. Optuna is imported only by ``study`` and ``storage``.
"""
from structlearn.depth.gain import (
    EntropyProfile,
    LayerEntropyRecorder,
    choose_depth,
    entropy_profile,
    layer_entropy,
    reference_coding_rate,
)

__all__ = ["EntropyProfile", "LayerEntropyRecorder", "choose_depth", "entropy_profile", "layer_entropy",
           "reference_coding_rate"]
