"""The evaluation protocols as objects, in one registry.

A :class:`Protocol` holds everything that differs between the ``paper``
protocol (exactly Rodgers 2025) and the ``standard`` one (what a reviewer
expects): default repeats, folds and probes, how data fractions and splits are
made, how folds are aggregated, the probes' settings, the few-shot query rule,
the clusterings of the morphospace, and the table captions. Code asks the
protocol (``protocol.cv_repeats``, ``protocol.reference_splits``) instead of
comparing names, and every public function and command takes its default from
:data:`DEFAULT_PROTOCOL`.

    >>> from palaeo_ssl.protocol import get_protocol
    >>> get_protocol("paper").cv_repeats
    10
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from .params import ParameterError, shown


@dataclass(frozen=True)
class Protocol:
    """What one protocol decides. Frozen: protocols are compared and hashed by value."""

    name: str
    #: one line for ``--help`` and captions
    summary: str
    # ---------------------------------------------------------------- cross-validation
    #: probes run when none are named
    probes: tuple[str, ...]
    #: cross-validation repeats when none are given
    cv_repeats: int
    #: folds per repeat when none are given
    cv_folds: int
    #: repeat r of a run with seed s uses random_state ``repeat_seed_base + s + r``
    repeat_seed_base: int
    #: True: per fraction a stratified subsample, reference folds, folds lacking a class skipped
    #: (the reference); False: repeated stratified (grouped) K-fold with a fixed test fold and
    #: nested training subsets, nothing dropped
    reference_splits: bool
    #: True: mean and std (ddof=1) over the folds pooled across repeats (the reference);
    #: False: mean over splits, std of the per-repeat means, corrected t interval, paired comparisons
    reference_aggregation: bool
    # ---------------------------------------------------------------- probes
    #: logistic regression: "reference" (C=1 on raw features) or "tuned" (standardised, C by inner CV)
    logreg: str
    #: kNN: "reference" (k=5, uniform votes, ties to the lowest class) or "dino" (k=20, T=0.07 weights)
    knn: str
    #: cross-validation: above this many training images a probe learns from a seeded stratified
    #: subsample of this size (the prefix of the fold's nested stratified order), stated in the
    #: tables; None: always every training image (the reference)
    max_train_images: int | None
    # ---------------------------------------------------------------- few-shot
    #: "rest": every class, query = all remaining images; "balanced": classes with k + 1 images,
    #: a balanced query of up to n_query per class
    few_shot_query: str
    # ---------------------------------------------------------------- morphospace
    #: True adds HDBSCAN with a size rule that scales, Ward, and stability over seeds
    extended_clustering: bool
    # ---------------------------------------------------------------- captions
    cv_caption: str
    few_shot_caption: str
    clustering_caption: str

    def __str__(self) -> str:
        return self.name


PAPER = Protocol(
    name="paper",
    summary="exactly the protocol of Rodgers (2025), comparable with its published tables",
    probes=("logreg", "knn"),
    cv_repeats=10,
    cv_folds=5,
    repeat_seed_base=42,
    reference_splits=True,
    reference_aggregation=True,
    logreg="reference",
    knn="reference",
    max_train_images=None,
    few_shot_query="rest",
    extended_clustering=False,
    cv_caption=("Cross-validated classification (protocol of Rodgers 2025): mean and standard deviation over "
                "the folds of all repeats; best value per data fraction in bold."),
    few_shot_caption="all remaining images as query",
    clustering_caption="",
)

STANDARD = Protocol(
    name="standard",
    summary=("repeated stratified (grouped by specimen) K-fold with nested learning-curve subsets, tuned "
             "logistic regression, DINO-style kNN, intervals and paired comparisons"),
    probes=("logreg", "knn", "centroid"),
    cv_repeats=5,
    cv_folds=5,
    repeat_seed_base=0,
    reference_splits=False,
    reference_aggregation=False,
    logreg="tuned",
    knn="dino",
    max_train_images=10_000,
    few_shot_query="balanced",
    extended_clustering=True,
    cv_caption=("Cross-validated classification (repeated stratified K-fold, nested training subsets, fixed "
                "test folds): mean over splits and standard deviation over repeats; best value per data "
                "fraction in bold; 95% intervals in the CSV."),
    few_shot_caption="a balanced query per class",
    clustering_caption="; stability: mean ARI between 5 seeded runs on 90% subsamples",
)

#: every registered protocol, by name, in the order ``both`` runs them
PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (PAPER, STANDARD)}
#: the protocol of every public function and command that takes one
DEFAULT_PROTOCOL = "standard"
#: the name that means "each registered protocol" (``run`` / ``Pipeline``)
ALL = "both"

ProtocolLike = Union[str, Protocol]


def get_protocol(protocol: ProtocolLike, param: str = "protocol") -> Protocol:
    """The registered :class:`Protocol` named ``protocol`` (or ``protocol`` itself)."""
    if isinstance(protocol, Protocol):
        return protocol
    found = PROTOCOLS.get(str(protocol).strip().lower()) if isinstance(protocol, str) else None
    if found is None:
        raise ParameterError(param, "{name} must be one of " + ", ".join(PROTOCOLS) + ", not " + shown(protocol))
    return found


def expand(protocol: ProtocolLike, param: str = "protocol") -> list[Protocol]:
    """``"both"`` -> every registered protocol; otherwise the one protocol, in a list."""
    if isinstance(protocol, str) and protocol.strip().lower() == ALL:
        return list(PROTOCOLS.values())
    try:
        return [get_protocol(protocol, param)]
    except ParameterError:
        raise ParameterError(param, "{name} must be one of " + ", ".join([*PROTOCOLS, ALL])
                             + ", not " + shown(protocol)) from None


def choices(with_all: bool = False) -> list[str]:
    """Names for a command line's ``choices=``."""
    return [*PROTOCOLS, ALL] if with_all else list(PROTOCOLS)


__all__ = ["Protocol", "PAPER", "STANDARD", "PROTOCOLS", "DEFAULT_PROTOCOL", "ALL", "get_protocol", "expand",
           "choices", "ProtocolLike"]
