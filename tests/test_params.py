"""Parameter checks at the library's edge: constraints, messages that name the parameter, the decorator."""

from __future__ import annotations

import pytest

from palaeo_ssl.errors import UserError
from palaeo_ssl.params import (FRACTION, POSITIVE_INT, Interval, Options, ParameterError, Sequence, check,
                               validate_params)


@pytest.mark.parametrize("value", [1, 7, 10**9])
def test_positive_int_accepts(value):
    assert check("n", value, POSITIVE_INT) == value


@pytest.mark.parametrize("value", [0, -1, 1.5, "3", True, None, float("nan")])
def test_positive_int_refuses_and_names_the_parameter(value):
    with pytest.raises(ParameterError) as info:
        check("n_repeats", value, POSITIVE_INT)
    assert info.value.param == "n_repeats"
    assert str(info.value) == f"n_repeats must be an integer >= 1, not {value!r}"
    assert isinstance(info.value, UserError) and info.value.exit_code == 2


def test_message_for_puts_a_flag_in_place_of_the_name():
    with pytest.raises(ParameterError) as info:
        check("n_splits", 1, Interval(int, 2, None))
    assert info.value.message_for("--folds") == "--folds must be an integer >= 2, not 1"


def test_none_allowed_only_when_listed_and_never_mentioned():
    assert check("n", None, [POSITIVE_INT, None]) is None
    with pytest.raises(ParameterError, match=r"^n must be an integer >= 1, not 0$"):
        check("n", 0, [POSITIVE_INT, None])  # 0 never silently means "the default"


def test_intervals_closed_and_open():
    assert check("f", 1.0, FRACTION) == 1.0
    with pytest.raises(ParameterError, match=r"f must be a number in \(0, 1\], not 0"):
        check("f", 0, FRACTION)
    with pytest.raises(ParameterError, match=r"x must be a number < 3"):
        check("x", 3, Interval(float, None, 3, closed="left"))


def test_options_and_sequences():
    assert check("pooling", "cls", Options(("cls", "mean"))) == "cls"
    with pytest.raises(ParameterError, match=r"pooling must be one of 'cls', 'mean', not 'max'"):
        check("pooling", "max", Options(("cls", "mean")))
    assert check("shots", [1, 5], Sequence(POSITIVE_INT)) == [1, 5]
    for bad in ([], [1, 0], "1,2"):
        with pytest.raises(ParameterError, match="shots must be a non-empty list of integers >= 1"):
            check("shots", bad, Sequence(POSITIVE_INT))


def test_validate_params_checks_positional_and_keyword_calls_and_keeps_the_spec():
    @validate_params({"k": POSITIVE_INT})
    def f(x, k=3):
        return x * k

    assert f(2) == 6 and f(2, 4) == 8 and f(2, k=5) == 10
    with pytest.raises(ParameterError, match="k must be"):
        f(2, 0)
    with pytest.raises(ParameterError, match="k must be"):
        f(2, k=-1)
    assert f.__param_spec__ == {"k": POSITIVE_INT}


def test_validate_params_refuses_a_spec_naming_no_parameter():
    with pytest.raises(TypeError, match="no parameter"):
        @validate_params({"kk": POSITIVE_INT})
        def g(k=1):
            return k


@pytest.mark.parametrize("value", ["{lr}", "{name}", "{{x}}", "{0} %s %(x)d", "'\"", "a\nb", "ü∂ {"])
def test_a_value_the_user_gave_is_data_never_a_template(value):
    """What a caller passed is shown exactly as given (its repr), also where it holds ``{name}`` or braces."""
    with pytest.raises(ParameterError) as info:
        check("probes", value, Options(["logreg", "knn"]))
    assert str(info.value) == f"probes must be one of 'logreg', 'knn', not {value!r}"
    assert info.value.message_for("--probes") == f"--probes must be one of 'logreg', 'knn', not {value!r}"


def test_a_template_is_text_with_one_placeholder():
    error = ParameterError("k", "{name} must hold {0}, %s and {{ }}: see {name}")
    assert error.message_for("-k") == "-k must hold {0}, %s and { }: see -k"  # {{ }} as format strings wrote them


@pytest.mark.parametrize("value", ["{lr}", "{name}", "%s", "ü{"])
def test_library_messages_quote_any_text(value):
    """Where a message quotes what was passed (here the probes), the text is data: no KeyError, no placeholder."""
    from palaeo_ssl.probes.classifiers import parse_probes
    from palaeo_ssl.protocol import get_protocol

    with pytest.raises(ParameterError) as info:
        parse_probes(value)
    assert info.value.message_for("--probes").startswith(f"unknown probe {value!r} in --probes;")
    with pytest.raises(ParameterError) as info:
        get_protocol(value)
    assert str(info.value).endswith(f", not {value!r}")
