"""The standard protocol's logistic regression: C chosen by an inner CV, solved fast at many taxa.

:class:`TunedLogisticRegression` makes the same choice as
``StandardScaler() -> LogisticRegressionCV(Cs=C_GRID, cv=StratifiedKFold(3,
shuffle=True, random_state=seed), scoring="balanced_accuracy",
class_weight="balanced")``: features standardised on the training set, the
multinomial L2 logistic loss with balanced class weights (scikit-learn's
objective, intercept not penalised), C the grid value with the best mean
inner balanced accuracy (the smallest C among ties), refitted on the whole
training set from the mean of the inner fits. Only the training set is ever
seen: the inner folds split it, nothing else.

What makes it fast, without changing the optimum of any fit:

* **Preconditioning.** Frozen-backbone features are strongly correlated, so the
  loss is badly conditioned and L-BFGS needs hundreds of iterations at large C
  (445 at the chosen C on 3,372 real images in 281 taxa through a random ViT-S).
  Each fit runs in the rotated and rescaled coordinates ``u = diag(sqrt(h)) V^T w``
  where ``V, lambda`` are the eigenvectors and eigenvalues of the standardised
  training features' covariance and ``h = lambda / K + 1 / (C n)`` approximates
  the curvature of the loss along each eigenvector. The penalty becomes
  ``sum(u^2 / h) / (2 C n)``: the same objective in other coordinates, so the
  same minimiser, reached in far fewer iterations. The rotation is computed
  once per training set and shared by all inner folds and C values.
* **Warm starts along the C path** (increasing C, as scikit-learn's path), and
  the refit starts from the mean inner solution at the chosen C.
* **A grid that stops** after ``patience`` successive C values whose mean inner
  score is below the best so far (0 disables it and fits the whole grid).
* Optionally **fewer inner fits and a looser stopping rule**: ``inner_folds_used=1``
  scores C on the first inner fold only (a stratified hold-out of 1/n_inner of the
  training set) and ``tol`` / ``inner_tol`` set the gradient at which fits stop.
  The standard protocol uses all three inner folds and 1e-3 (:func:`.classifiers.standard_logreg`):
  on 384-d features of real images in 281 pseudo-taxa through a random ViT-S/16
  (standardised covariance eigenvalues from 3e-6 to 300) the refit at the chosen C
  did not reach 1e-4 in 600 iterations in any coordinates, and stopping at 1e-3
  changed test accuracy by well under a point (``benchmarks/probe_many_taxa.py``).

The solver is scipy's L-BFGS-B in every case; the loss and its gradient (the
matrix products, all the work at scale) are computed by numpy, or by torch on a
device (``device="cuda"``, or ``"cpu"`` to run that code without a GPU). The
products are float32 for float32 features (as scikit-learn keeps them) and
float64 otherwise, on either path.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import StratifiedKFold
from sklearn.utils.validation import check_is_fitted

#: stopping rule of every fit, as scikit-learn's lbfgs: max |gradient| of the loss in the
#: standardised coordinates (the coordinates the solver works in do not change it)
TOL = 1e-4


def _balanced_weights(pos: np.ndarray, n_classes: int) -> np.ndarray:
    """scikit-learn's ``class_weight="balanced"`` per row: n / (K * n_class) (classes absent get none)."""
    counts = np.bincount(pos, minlength=n_classes).astype(np.float64)
    present = counts > 0
    w = np.zeros(n_classes)
    w[present] = len(pos) / (present.sum() * counts[present])
    return w[pos]


# ---------------------------------------------------------------------- the solver
def _loss_grad_numpy(theta, Z, pos, sw, pen, n_classes):
    """Weighted mean softmax cross-entropy + 0.5 * sum(pen * U^2); theta = [U (K x d), b (K)] raveled."""
    d = Z.shape[1]
    U = theta[: n_classes * d].reshape(n_classes, d)
    b = theta[n_classes * d:]
    S = (Z @ U.T.astype(Z.dtype)).astype(np.float64) + b  # the products in Z's dtype (float32: half the time)
    S -= S.max(axis=1, keepdims=True)
    E = np.exp(S)
    tot = E.sum(axis=1, keepdims=True)
    rows = np.arange(len(pos))
    loss = -float(np.dot(sw, S[rows, pos] - np.log(tot[:, 0]))) + 0.5 * float(np.sum(pen * U * U))
    G = E / tot
    G[rows, pos] -= 1.0
    G *= sw[:, None]
    gU = (G.T.astype(Z.dtype) @ Z).astype(np.float64) + pen * U
    gb = G.sum(axis=0)
    return loss, np.concatenate([gU.ravel(), gb])


def _gradient_norm(g, s, V, n_classes):
    """max |gradient| in the standardised coordinates (scikit-learn's stopping rule) from the gradient in u."""
    d = len(s)
    gw = (g[: n_classes * d].reshape(n_classes, d) / s) @ V.T
    return max(float(np.abs(gw).max(initial=0.0)), float(np.abs(g[n_classes * d:]).max(initial=0.0)))


def _torch_loss_grad(device, dtype):
    """``_loss_grad_numpy`` with the matrix work on a torch device; Z is moved there once per fit."""
    import torch

    tdt = torch.float32 if dtype == np.float32 else torch.float64
    cache: dict = {}

    def setup(Z, pos, sw):
        cache["Z"] = torch.as_tensor(np.ascontiguousarray(Z, dtype=dtype), device=device)
        cache["pos"] = torch.as_tensor(pos, dtype=torch.long, device=device)
        cache["sw"] = torch.as_tensor(sw, dtype=torch.float64, device=device)
        cache["rows"] = torch.arange(len(pos), device=device)

    def loss_grad(theta, Z, pos, sw, pen, n_classes):
        Zt, pos_t, sw_t, rows = cache["Z"], cache["pos"], cache["sw"], cache["rows"]
        d = Zt.shape[1]
        th = torch.as_tensor(theta, dtype=torch.float64, device=device)
        U, b = th[: n_classes * d].reshape(n_classes, d), th[n_classes * d:]
        S = (Zt @ U.T.to(tdt)).double() + b
        logp = torch.log_softmax(S, dim=1)
        pen_t = torch.as_tensor(pen, dtype=torch.float64, device=device)
        loss = -(sw_t * logp[rows, pos_t]).sum() + 0.5 * (pen_t * U * U).sum()
        G = torch.exp(logp)
        G[rows, pos_t] -= 1.0
        G *= sw_t[:, None]
        gU = (G.T.to(tdt) @ Zt).double() + pen_t * U
        grad = torch.cat([gU.reshape(-1), G.sum(dim=0)])
        return float(loss), grad.cpu().numpy()

    return setup, loss_grad


def _solve(Z, pos, sw, pen, U0, b0, max_iter, tol, s, V, dtype=np.float64, device=None):
    """Minimise the weighted softmax loss in the preconditioned coordinates from (U0, b0): (U, b, iterations).

    L-BFGS-B (scipy) drives the search on the CPU in float64; the loss and gradient are computed
    with numpy or, with ``device``, by torch on that device. It stops as scikit-learn's lbfgs does
    (max |gradient| in the standardised coordinates <= tol, or a relative decrease below 64 eps).
    """
    from scipy import optimize

    n_classes, d = U0.shape
    sw = sw / sw.sum()
    if device is None:
        Zw, loss_grad = np.ascontiguousarray(Z, dtype=dtype), _loss_grad_numpy
    else:
        setup, loss_grad = _torch_loss_grad(device, dtype)
        setup(Z, pos, sw)
        Zw = None
    last: dict = {}

    def fun(theta):
        f, g = loss_grad(theta, Zw, pos, sw, pen, n_classes)
        last["x"], last["g"] = theta.copy(), g
        return f, g

    def stop(intermediate_result):
        x = intermediate_result.x
        g = last["g"] if np.array_equal(x, last.get("x")) else fun(x)[1]
        if _gradient_norm(g, s, V, n_classes) <= tol:
            raise StopIteration

    theta0 = np.concatenate([U0.ravel(), b0]).astype(np.float64)
    if _gradient_norm(fun(theta0)[1], s, V, n_classes) <= tol:
        return U0, b0, 0
    res = optimize.minimize(fun, theta0, jac=True, method="L-BFGS-B", callback=stop,
                            options={"maxiter": max_iter, "gtol": 0.0, "ftol": 64 * np.finfo(float).eps,
                                     "maxls": 50})
    th = res.x
    return th[: n_classes * d].reshape(n_classes, d), th[n_classes * d:].copy(), int(res.nit)


# ---------------------------------------------------------------------- the estimator
class TunedLogisticRegression(ClassifierMixin, BaseEstimator):
    """Standardised features + multinomial logistic regression, C chosen by a stratified inner CV.

    Parameters
    ----------
    Cs : the C grid, searched in increasing order.
    n_inner : inner folds (lowered to the largest class count when a class is smaller; with no
        class of 2 images there is nothing to tune on and C = 1 is used).
    inner_folds_used : score C on only the first this many inner folds (None: all, as
        ``LogisticRegressionCV``; 1: a stratified hold-out).
    tol, inner_tol : stopping rule (max |gradient| in standardised coordinates) of the final fit
        and of the inner fits (None: ``tol``).
    patience : stop the grid after this many successive C values below the best mean inner
        score (0: the whole grid).
    max_iter : L-BFGS iterations per fit.
    random_state : seed of the inner folds.
    device : None (numpy and scipy) or a torch device ("cpu", "cuda", "cuda:1").

    After ``fit``: ``classes_``, ``C_`` (chosen), ``coef_`` (K, D) and ``intercept_`` (K,) on the
    raw features, ``scores_`` (mean inner balanced accuracy per searched C; NaN where the grid
    stopped), ``n_iter_`` (iterations of the final fit) and ``n_iter_search_`` (all fits).
    """

    def __init__(self, Cs=(1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0), n_inner: int = 3, patience: int = 2,
                 max_iter: int = 1000, random_state: int = 0, device: str | None = None, tol: float = TOL,
                 inner_tol: float | None = None, inner_folds_used: int | None = None):
        self.Cs = Cs
        self.n_inner = n_inner
        self.inner_tol = inner_tol
        self.inner_folds_used = inner_folds_used
        self.patience = patience
        self.max_iter = max_iter
        self.random_state = random_state
        self.device = device
        self.tol = tol

    # -- coordinates
    @staticmethod
    def _curvature(lam, K, r):
        """Approximate curvature of the loss along each eigenvector (the preconditioner's h)."""
        return lam / K + r

    def _solver(self, dtype):
        device = self.device

        def solve(*args):
            return _solve(*args, dtype=dtype, device=device)

        return solve

    def fit(self, X, y):
        # numpy: the matrix products in float32 for float32 features (as scikit-learn keeps them), else float64
        dtype = np.float32 if getattr(X, "dtype", None) == np.float32 else np.float64
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y)
        self.classes_, pos = np.unique(y, return_inverse=True)
        n, d = X.shape
        K = len(self.classes_)
        self.n_features_in_ = d
        self.mean_ = X.mean(axis=0)
        scale = X.std(axis=0)
        scale[scale < 10 * np.finfo(np.float64).eps] = 1.0  # as StandardScaler: constant features unscaled
        self.scale_ = scale
        Xs = (X - self.mean_) / scale
        # eigenvectors of the training covariance: shared by every inner fold and C
        lam, V = np.linalg.eigh(Xs.T @ Xs / n)
        lam = np.clip(lam, 0.0, None)
        R = Xs @ V  # rotated features (n, d); penalty ||w||^2 = ||V^T w||^2
        solve = self._solver(dtype)
        Cs = sorted(float(c) for c in self.Cs)
        counts = np.bincount(pos, minlength=K)
        self.scores_ = np.full(len(Cs), np.nan)
        self.n_iter_search_ = 0
        if K < 2:
            raise ValueError("TunedLogisticRegression needs at least two classes")
        if counts.max() < 2:
            best_C, W0, b0 = 1.0, np.zeros((K, d)), np.zeros(K)
        elif len(Cs) == 1:  # nothing to choose: no inner search
            best_C, W0, b0 = Cs[0], np.zeros((K, d)), np.zeros(K)
        else:
            n_inner = min(self.n_inner, int(counts.max()))
            best_C, W0, b0 = self._search(R, pos, _balanced_weights(pos, K), lam, V, K, Cs, n_inner, solve)
        # the refit on every training image, from the mean inner solution at the chosen C
        sw = _balanced_weights(pos, K)
        r = 1.0 / (best_C * sw.sum())
        h = self._curvature(lam, K, r)
        s = 1.0 / np.sqrt(h)
        U, b, it = solve(R * s, pos, sw, r / h, W0 / s, b0, self.max_iter, self.tol, s, V)
        self.n_iter_search_ += it
        self.n_iter_ = np.asarray([it], dtype=np.int32)
        self.C_ = best_C
        W_rot = U * s  # weights in rotated standardised coordinates
        W_std = W_rot @ V.T
        self.coef_ = W_std / scale
        self.intercept_ = b - self.coef_ @ self.mean_
        return self

    def _search(self, R, pos, sw_all, lam, V, K, Cs, n_inner, solve):
        """Mean inner balanced accuracy along the C path; returns (best C, mean inner W_rot, mean b).

        As ``LogisticRegressionCV``, the class weights are those of the whole training set.
        """
        from sklearn.metrics import balanced_accuracy_score

        folds = list(StratifiedKFold(n_inner, shuffle=True, random_state=self.random_state).split(R, pos))
        folds = folds[: self.inner_folds_used or n_inner]
        tol = self.tol if self.inner_tol is None else self.inner_tol
        d = R.shape[1]
        state = [(np.zeros((K, d)), np.zeros(K)) for _ in folds]  # warm starts, rotated coordinates
        best, best_i, since, at_best = -np.inf, 0, 0, None
        for i, C in enumerate(Cs):
            scores, sols = [], []
            for f, (tr, va) in enumerate(folds):
                ptr, sw = pos[tr], sw_all[tr]
                r = 1.0 / (C * sw.sum())
                h = self._curvature(lam, K, r)
                s = 1.0 / np.sqrt(h)
                W0, b0 = state[f]
                U, b, it = solve(R[tr] * s, ptr, sw, r / h, W0 / s, b0, self.max_iter, tol, s, V)
                self.n_iter_search_ += it
                W = U * s
                # a class absent from the inner training part keeps its zero weights and a -inf score
                absent = np.bincount(ptr, minlength=K) == 0
                scores_va = R[va] @ W.T + b
                scores_va[:, absent] = -np.inf
                scores.append(balanced_accuracy_score(pos[va], np.argmax(scores_va, axis=1)))
                state[f] = (W, b)
                sols.append((W, b))
            self.scores_[i] = float(np.mean(scores))
            if self.scores_[i] > best:
                best, best_i, since = self.scores_[i], i, 0
                at_best = sols
            else:
                since += 1
                if self.patience and since >= self.patience:
                    break
        W0 = np.mean([w for w, _ in at_best], axis=0)
        b0 = np.mean([b for _, b in at_best], axis=0)
        return Cs[best_i], W0, b0

    # -- prediction
    def decision_function(self, X) -> np.ndarray:
        check_is_fitted(self, "coef_")
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[-1]} features, but this probe was fitted with {self.n_features_in_}")
        return X @ self.coef_.T + self.intercept_

    def predict_proba(self, X) -> np.ndarray:
        s = self.decision_function(X)
        s -= s.max(axis=1, keepdims=True)
        e = np.exp(s)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.decision_function(X), axis=1)]
