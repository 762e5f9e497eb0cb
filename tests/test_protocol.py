"""The protocol registry: one default, one error message, protocols as values."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from palaeo_ssl.params import ParameterError
from palaeo_ssl.protocol import (ALL, DEFAULT_PROTOCOL, PAPER, PROTOCOLS, STANDARD, choices, expand,
                                 get_protocol)


def test_registry_holds_paper_and_standard_with_their_defaults():
    assert list(PROTOCOLS) == ["paper", "standard"] and DEFAULT_PROTOCOL == "standard"
    assert (PAPER.cv_repeats, PAPER.cv_folds, PAPER.repeat_seed_base, PAPER.probes) == (10, 5, 42, ("logreg", "knn"))
    assert (STANDARD.cv_repeats, STANDARD.repeat_seed_base) == (5, 0)
    assert STANDARD.probes == ("logreg", "knn", "centroid")
    assert PAPER.reference_splits and not STANDARD.reference_splits
    assert not PAPER.extended_clustering and STANDARD.extended_clustering


def test_get_protocol_accepts_names_and_objects_and_refuses_others_with_one_message():
    assert get_protocol("paper") is PAPER and get_protocol(" Standard ") is STANDARD
    assert get_protocol(STANDARD) is STANDARD
    for bad in ("best", "", None, 3, ALL):
        with pytest.raises(ParameterError, match=r"^protocol must be one of paper, standard, not "):
            get_protocol(bad)


def test_expand_and_choices():
    assert expand(ALL) == [PAPER, STANDARD] and expand("paper") == [PAPER]
    with pytest.raises(ParameterError, match="protocol must be one of paper, standard, both"):
        expand("nope")
    assert choices() == ["paper", "standard"] and choices(with_all=True) == ["paper", "standard", "both"]


def test_protocols_are_frozen_values():
    with pytest.raises(dataclasses.FrozenInstanceError):
        PAPER.cv_repeats = 3  # type: ignore[misc]
    assert hash(PAPER) != hash(STANDARD) and dataclasses.replace(PAPER) == PAPER


def test_every_public_function_defaults_to_the_one_default_protocol():
    from palaeo_ssl.morphospace import MorphospaceConfig, cluster_morphospace, run_morphospace
    from palaeo_ssl.probes import (ProbeConfig, cross_validate, few_shot, fit_probe, run_cross_validation,
                                   run_few_shot, run_probe_report)
    from palaeo_ssl.probes.classifiers import parse_probes

    for fn in (cross_validate, few_shot, fit_probe, run_cross_validation, run_few_shot, run_probe_report,
               run_morphospace, cluster_morphospace, parse_probes):
        assert inspect.signature(fn).parameters["protocol"].default == DEFAULT_PROTOCOL, fn.__name__
    assert ProbeConfig().protocol == MorphospaceConfig().protocol == DEFAULT_PROTOCOL


def test_configs_normalise_and_check_their_values():
    from palaeo_ssl.morphospace import MorphospaceConfig
    from palaeo_ssl.probes import ProbeConfig

    c = ProbeConfig(protocol=PAPER.name, fractions=(1.0, 0.1))
    assert c.probes == PAPER.probes and c.fractions == (0.1, 1.0) and c.repeats == 10 and c.folds == 5
    assert dataclasses.asdict(c)["protocol"] == "paper"
    with pytest.raises(ParameterError, match="n_repeats must be an integer >= 1, not 0"):
        ProbeConfig(n_repeats=0)
    with pytest.raises(ParameterError, match=r"literature_best must be a number in \(0, 1\]"):
        ProbeConfig(literature_best=87.4)
    with pytest.raises(ParameterError, match="n_boot must be an integer >= 1, not 0"):
        MorphospaceConfig(n_boot=0)
    with pytest.raises(ParameterError, match="tsne_max_points must be an integer >= 1, not 0"):
        MorphospaceConfig(tsne_max_points=0)


@pytest.mark.slow
def test_probe_command_and_run_probe_report_without_a_protocol_write_identical_tables(tmp_path, capsys):
    import numpy as np
    import pandas as pd

    from palaeo_ssl import Embeddings
    from palaeo_ssl.cli import main
    from palaeo_ssl.probes import run_probe_report

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 12)
    x = (rng.normal(size=(3, 6))[y] * 1.5 + rng.normal(size=(36, 6))).astype(np.float32)
    store = Embeddings(x, [f"c{c}/{i}.png" for i, c in enumerate(y)], y, ["a", "b", "c"]).save(tmp_path / "store")
    opts = dict(n_repeats=2, episodes=3, shots=[1, 2])
    run_probe_report(store, tmp_path / "python", n_jobs=1, **opts)
    assert main(["probe", str(store), "--out", str(tmp_path / "cli"), "--repeats", "2", "--episodes", "3",
                 "--shots", "1,2", "--jobs", "1", "--no-progress"]) == 0
    text = capsys.readouterr().out  # the command's one-screen summary
    assert "standard protocol" in text and "top-1 accuracy" in text and "Logistic Regression" in text \
        and "few-shot" in text
    tables = sorted(p.name for p in (tmp_path / "python").glob("*.csv"))
    assert "classification_paired_comparison.csv" in tables  # the standard protocol's own table
    assert tables == sorted(p.name for p in (tmp_path / "cli").glob("*.csv"))
    for name in tables:
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "python" / name), pd.read_csv(tmp_path / "cli" / name))
    for name in ("classification_cv_results.tex", "few_shot_cv_results.tex"):
        assert (tmp_path / "python" / name).read_text() == (tmp_path / "cli" / name).read_text()
