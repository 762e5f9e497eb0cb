"""The reference's logistic regression, fitted with less per-iteration overhead and identical results.

The paper protocol fits ``LogisticRegression(C=1, class_weight="balanced",
max_iter=1000)`` hundreds of times (every fold, every few-shot episode), and
must give exactly the reference's numbers. Each fit is L-BFGS-B
(``scipy.optimize.minimize``) over scikit-learn's multinomial loss; in every
iteration scikit-learn's loss wrapper spends some 6-8% of the fit on array-API
dispatch (namespace and device look-ups, conversions) that plain numpy input
does not need.

:class:`ReferenceLogisticRegression` is a ``LogisticRegression`` whose ``fit``
runs the same optimisation with a lean loss function: the same float
operations in the same order (the same matrix products on the same arrays,
scikit-learn's own compiled multinomial loss, the same scipy call with the same
options), so coefficients, iteration counts and probabilities are bit-identical
to ``LogisticRegression.fit`` (``tests/test_probes_lean_logreg.py`` checks this
on several data sets). It takes the lean path only where it mirrors the
installed scikit-learn exactly: scikit-learn 1.9 (the pinned version), dense
finite input, three or more classes, no sample weights and the reference's
parameters. Anything else goes through ``LogisticRegression.fit`` unchanged.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression

#: scikit-learn releases whose lbfgs multinomial fit this module mirrors
_MIRRORED = ("1.9.",)

#: the parameters the lean path mirrors (anything else: the library's own fit)
_REFERENCE_PARAMS = {
    "C": 1.0, "class_weight": "balanced", "dual": False, "fit_intercept": True, "intercept_scaling": 1,
    "max_iter": 1000, "solver": "lbfgs", "tol": 1e-4, "verbose": 0, "warm_start": False,
}


def _lean_available() -> bool:
    import sklearn

    if not sklearn.__version__.startswith(_MIRRORED):
        return False
    try:
        # every private name the lean fit imports, so a patch release that moves one falls back cleanly
        from sklearn._loss.loss import HalfMultinomialLoss  # noqa: F401
        from sklearn.linear_model._logistic import _LOGISTIC_SOLVER_CONVERGENCE_MSG  # noqa: F401
        from sklearn.utils.extmath import squared_norm  # noqa: F401
        from sklearn.utils.optimize import _check_optimize_result  # noqa: F401
    except ImportError:  # pragma: no cover - a release that moved them
        return False
    return True


LEAN_AVAILABLE = _lean_available()


def _loss_gradient(coef, X, y, sample_weight, l2_reg_strength, base_loss, n_classes, n_features):
    """``LinearModelLoss(HalfMultinomialLoss, fit_intercept=True).loss_gradient`` for numpy input.

    The same operations, in the same order and dtypes, as scikit-learn 1.9's
    ``weight_intercept_raw`` + ``loss_gradient`` + ``l2_penalty``.
    """
    from sklearn.utils.extmath import squared_norm

    w = coef.reshape((n_classes, -1), order="F")
    intercept = w[:, -1]
    weights = w[:, :-1]
    raw_prediction = X @ np.asarray(weights, dtype=X.dtype).T + np.asarray(intercept, dtype=X.dtype)
    loss, grad_pointwise = base_loss.loss_gradient(y_true=y, raw_prediction=raw_prediction,
                                                   sample_weight=sample_weight, n_threads=1)
    sw_sum = np.sum(sample_weight)
    loss = float(np.sum(loss) / sw_sum)
    loss += float(0.5 * l2_reg_strength * squared_norm(weights))
    grad_pointwise /= sw_sum
    grad = np.empty((n_classes, n_features + 1), dtype=weights.dtype, order="F")
    grad[:, :n_features] = grad_pointwise.T @ X + l2_reg_strength * weights
    grad[:, -1] = np.sum(grad_pointwise, axis=0)
    return loss, grad.ravel(order="F")


class ReferenceLogisticRegression(LogisticRegression):
    """``LogisticRegression`` with the reference's settings and a lean, bit-identical lbfgs fit.

    Construct it like ``LogisticRegression``; :func:`.classifiers.reference_logreg`
    makes the reference's instance. Predictions, probabilities and pickling are
    ``LogisticRegression``'s.
    """

    def _lean_applies(self, X, y, sample_weight) -> bool:
        if not LEAN_AVAILABLE or sample_weight is not None or not isinstance(X, np.ndarray):
            return False
        params = self.get_params()
        if any(params.get(k) != v for k, v in _REFERENCE_PARAMS.items()):
            return False
        if params.get("penalty") not in ("l2", "deprecated") or params.get("l1_ratio") not in (None, 0, 0.0):
            return False
        if params.get("n_jobs") is not None or X.ndim != 2 or X.dtype not in (np.float32, np.float64):
            return False
        y = np.asarray(y)
        if y.ndim != 1 or y.shape[0] != X.shape[0] or y.dtype.kind not in "iu":
            return False
        return len(np.unique(y)) >= 3 and bool(np.isfinite(X).all())

    def fit(self, X, y, sample_weight=None):
        if not self._lean_applies(X, y, sample_weight):
            return super().fit(X, y, sample_weight=sample_weight)
        from scipy import optimize
        from sklearn._loss.loss import HalfMultinomialLoss
        from sklearn.linear_model._logistic import _LOGISTIC_SOLVER_CONVERGENCE_MSG
        from sklearn.utils.class_weight import compute_class_weight
        from sklearn.utils.optimize import _check_optimize_result

        # LogisticRegression.fit -> validate_data: float32/float64 kept, C order
        X = np.ascontiguousarray(np.asarray(X))
        y = np.asarray(y)
        classes = np.unique(y)
        n_classes = len(classes)
        n_samples, n_features = X.shape
        # _logistic_regression_path: balanced class weights as sample weights in X's dtype
        sample_weight = np.ones(n_samples, dtype=X.dtype)
        encoded = np.searchsorted(classes, y)  # LabelEncoder().fit(classes).transform(y)
        class_weight = compute_class_weight("balanced", classes=classes, y=y, sample_weight=sample_weight)
        sample_weight *= np.asarray(class_weight[encoded], dtype=X.dtype)
        sw_sum = float(np.sum(sample_weight))
        target = np.asarray(encoded, dtype=X.dtype)
        w0 = np.zeros((n_classes, n_features + 1), order="F", dtype=X.dtype).ravel(order="F")
        l2_reg_strength = 1.0 / (self.C * sw_sum)
        result = optimize.minimize(
            _loss_gradient, w0, method="L-BFGS-B", jac=True,
            args=(X, target, sample_weight, l2_reg_strength, HalfMultinomialLoss(n_classes=n_classes), n_classes,
                  n_features),
            options={"maxiter": self.max_iter, "maxls": 50, "gtol": self.tol, "ftol": 64 * np.finfo(float).eps},
        )
        n_iter = _check_optimize_result("lbfgs", result, self.max_iter,
                                        extra_warning_msg=_LOGISTIC_SOLVER_CONVERGENCE_MSG)
        multi_w0 = np.reshape(result.x, (n_classes, -1), order="F")
        coefs = np.stack([np.asarray(multi_w0.copy(order="K"), dtype=X.dtype)])
        self.classes_ = classes
        self.n_features_in_ = n_features
        self.n_iter_ = np.asarray([n_iter], dtype=np.int32)
        coef = coefs[0, ...]
        self.intercept_ = coef[:, -1]
        self.coef_ = coef[:, :-1]
        return self
