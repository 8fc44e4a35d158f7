"""Information per layer: entropy and mutual-information estimators (registry
``"estimator"``), feature normalisation, pixel MI versus distance, and the total correlation
that the depth search measures (:mod:`structlearn.info.total_correlation`).

    from structlearn.info import ESTIMATORS, normalize
    est = ESTIMATORS.create("knn", k=3)
    h = est(normalize(z, est.normalization))     # z: (N, d) samples x features, nats
"""
from structlearn.info.estimators import (
    ESTIMATORS,
    NORMALIZATIONS,
    BinnedMutualInformation,
    CodingRate,
    GaussianEntropy,
    KNNEntropy,
    KSGMutualInformation,
    NullSummary,
    add_jitter,
    binned_mutual_information,
    gaussian_entropy,
    kl_entropy,
    ksg_mutual_information,
    normalize,
    shuffle_null,
)
from structlearn.info.neighbors import count_within, knn_distances
from structlearn.info.pixel_mi import (
    MICurve,
    MosaicMICurve,
    mosaic_mi_vs_distance,
    offsets,
    pixel_mi_vs_distance,
)
from structlearn.info.total_correlation import TotalCorrelation, total_correlation

__all__ = [
    "ESTIMATORS", "NORMALIZATIONS", "BinnedMutualInformation", "CodingRate", "GaussianEntropy",
    "KNNEntropy", "KSGMutualInformation", "NullSummary", "add_jitter", "binned_mutual_information",
    "gaussian_entropy", "kl_entropy", "ksg_mutual_information", "normalize",
    "shuffle_null", "count_within", "knn_distances", "MICurve", "MosaicMICurve",
    "mosaic_mi_vs_distance", "offsets", "pixel_mi_vs_distance", "TotalCorrelation", "total_correlation",
]
