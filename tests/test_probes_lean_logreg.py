"""The lean reference logistic regression must equal scikit-learn's fit bit for bit."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from palaeo_ssl.probes.classifiers import reference_logreg
from palaeo_ssl.probes.lean_logreg import LEAN_AVAILABLE, ReferenceLogisticRegression


def _data(n, d, n_classes, seed, dtype=np.float32, offset=3.0, labels=None):
    rng = np.random.default_rng(seed)
    share = rng.dirichlet(np.full(n_classes, 2.0))
    y = rng.choice(n_classes, size=n, p=share)
    y[:n_classes] = np.arange(n_classes)  # every class present
    means = rng.normal(scale=1.0, size=(n_classes, d))
    x = means[y] + rng.normal(size=(n, d)) * 1.5 + offset
    if labels is not None:
        y = np.asarray(labels)[y]
    return x.astype(dtype), y.astype(np.int64)


def _pair(x, y, **params):
    base = dict(random_state=42, max_iter=1000, class_weight="balanced")
    base.update(params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        plain = LogisticRegression(**base).fit(x, y)
        lean = ReferenceLogisticRegression(**base).fit(x, y)
    return plain, lean


def _assert_identical(plain, lean, x_test):
    assert np.array_equal(plain.classes_, lean.classes_)
    assert plain.coef_.dtype == lean.coef_.dtype
    assert np.array_equal(plain.coef_, lean.coef_)
    assert np.array_equal(plain.intercept_, lean.intercept_)
    assert np.array_equal(plain.n_iter_, lean.n_iter_) and plain.n_iter_.dtype == lean.n_iter_.dtype
    assert np.array_equal(plain.predict_proba(x_test), lean.predict_proba(x_test))
    assert np.array_equal(plain.predict(x_test), lean.predict(x_test))


@pytest.mark.skipif(not LEAN_AVAILABLE, reason="the installed scikit-learn is not the one the lean fit mirrors")
@pytest.mark.parametrize("n,d,n_classes,seed,dtype,labels", [
    (600, 48, 7, 0, np.float32, None),
    (300, 96, 12, 1, np.float64, None),            # float64 input keeps float64
    (120, 32, 20, 2, np.float32, None),            # few images per class (few-shot sized)
    (400, 24, 5, 3, np.float32, [3, 8, 11, 40, 41]),  # labels that are not 0..C-1
])
def test_lean_fit_is_bit_identical(n, d, n_classes, seed, dtype, labels):
    x, y = _data(n, d, n_classes, seed, dtype, labels=labels)
    plain, lean = _pair(x[: n * 3 // 4], y[: n * 3 // 4])
    assert lean.n_iter_[0] > 5
    _assert_identical(plain, lean, x[n * 3 // 4:])


@pytest.mark.skipif(not LEAN_AVAILABLE, reason="the installed scikit-learn is not the one the lean fit mirrors")
def test_lean_fit_at_the_iteration_limit(monkeypatch):
    from palaeo_ssl.probes import lean_logreg

    monkeypatch.setitem(lean_logreg._REFERENCE_PARAMS, "max_iter", 3)
    x, y = _data(300, 40, 6, 4)
    lean = ReferenceLogisticRegression(random_state=42, max_iter=3, class_weight="balanced")
    assert lean._lean_applies(x, y, None)
    with pytest.warns(ConvergenceWarning, match="max_iter=3"):
        lean.fit(x, y)
    plain, lean = _pair(x, y, max_iter=3)
    assert lean.n_iter_[0] == 3
    _assert_identical(plain, lean, x)


def test_other_cases_use_the_library_fit():
    x, y = _data(200, 16, 2, 5)            # binary: scikit-learn's binomial path
    plain, lean = _pair(x, y)
    _assert_identical(plain, lean, x)
    x, y = _data(200, 16, 4, 6)
    w = np.linspace(0.5, 2.0, len(y))
    a = LogisticRegression(random_state=42, max_iter=1000, class_weight="balanced").fit(x, y, sample_weight=w)
    b = ReferenceLogisticRegression(random_state=42, max_iter=1000, class_weight="balanced").fit(x, y, sample_weight=w)
    assert np.array_equal(a.coef_, b.coef_)
    plain, lean = _pair(x, y, C=0.1)       # other parameters
    assert not lean._lean_applies(x, y, None)
    _assert_identical(plain, lean, x)


def test_reference_probe_is_the_lean_estimator_and_pickles():
    x, y = _data(200, 16, 4, 7)
    model = reference_logreg()
    assert isinstance(model, ReferenceLogisticRegression) and isinstance(model, LogisticRegression)
    model.fit(x, y)
    again = pickle.loads(pickle.dumps(model))
    assert np.array_equal(again.predict_proba(x), model.predict_proba(x))
