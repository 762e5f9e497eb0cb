"""``KNNProbe`` and ``CentroidProbe`` follow scikit-learn's estimator conventions.

scikit-learn's own estimator checks (``parametrize_with_checks``) run on both
probes, the kNN in both of its settings: ``weights="similarity"`` (the standard
protocol) and ``weights="uniform"`` (the paper protocol, which takes another
code path). The checks that cannot pass by design are listed in
:data:`EXPECTED_FAILURES` with the reason; they run as non-strict expected
failures.
"""

from __future__ import annotations

from sklearn.utils.estimator_checks import parametrize_with_checks

from palaeo_ssl.probes import CentroidProbe, KNNProbe

#: Why a check fails for a probe. The probes compute cosine similarities in float32 (the
#: features are float32), and BLAS may round a row's dot products differently when the row
#: is multiplied alone than inside a batch (a different kernel: 1 ulp, about 6e-8 here);
#: ``softmax(cosine / 0.07)`` then moves the probabilities by about 1e-6, more than the
#: check's rtol of 1e-7. Predictions change only at exact ties. Whether it shows depends
#: on the BLAS and the shapes (here the centroid probe shows it, the kNN does not), so the
#: failures are not strict.
FLOAT32_BATCH_ROUNDING = ("float32 cosine similarities: BLAS may round a row differently alone than in a batch "
                          "(1 ulp), which softmax(cos / 0.07) amplifies past the check's rtol of 1e-7")
EXPECTED_FAILURES = {
    "CentroidProbe": {"check_methods_subset_invariance": FLOAT32_BATCH_ROUNDING},
    "KNNProbe(similarity)": {"check_methods_subset_invariance": FLOAT32_BATCH_ROUNDING},
    "KNNProbe(uniform)": {},  # one vote per neighbour: bit-identical to scikit-learn's own kNN pipeline
}


def _expected_failures(estimator) -> dict[str, str]:
    name = type(estimator).__name__
    if isinstance(estimator, KNNProbe):
        name += f"({estimator.weights})"
    return EXPECTED_FAILURES[name]


@parametrize_with_checks([KNNProbe(), KNNProbe(n_neighbors=5, weights="uniform"), CentroidProbe()],
                         expected_failed_checks=_expected_failures, xfail_strict=False)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
