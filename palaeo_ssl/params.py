"""Checks of public parameters where they enter the library.

In the spirit of scikit-learn's ``validate_params``: each public function
declares its constraints once, next to its signature, and a bad value raises a
:class:`ParameterError` that names the *Python* parameter the caller used
(``n_splits must be an integer >= 2, not 0``). The command line translates the
parameter name into its flag in one place (:data:`palaeo_ssl.commands.FLAGS`),
so a notebook user never reads about ``--folds`` and a shell user never about
``n_splits``. Nothing here treats 0 as "use the default": ``None`` does that.

Constraints::

    Interval(int, 1, None)             an integer >= 1
    Interval(float, 0, 1, closed="right")   a number in (0, 1]
    Options({"cls", "mean"})           one of these values
    Sequence(Interval(int, 1, None))   a non-empty sequence of such values
    None in a list of constraints      None is allowed too

Usage::

    @validate_params({"n_splits": [Interval(int, 2, None)], "seed": [Interval(int, None, None)]})
    def run_cross_validation(emb, n_splits=5, seed=0): ...
"""

from __future__ import annotations

import functools
import inspect
import numbers
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from .errors import UserError


#: marks around a value given by the user inside a :class:`ParameterError` template (see :func:`literal`)
_DATA_START, _DATA_END = "\ue000", "\ue001"


def literal(value: Any) -> str:
    """``value`` as text that a :class:`ParameterError` template shows exactly as it is: never taken for the
    ``{name}`` placeholder, whatever braces, percent signs or quotes it holds."""
    text = str(value).replace(_DATA_START, "").replace(_DATA_END, "")
    return f"{_DATA_START}{text}{_DATA_END}"


def shown(value: Any) -> str:
    """``repr(value)`` as :func:`literal` data: how a refused value is quoted in a message (quotes, escaped
    newlines and control characters, so that the message stays on one line)."""
    return literal(repr(value))


#: what the template text (outside data) may hold: ``{name}``, and ``{{``/``}}`` for a brace (as templates were
#: written when they were format strings); every other character, brace or not, is itself
_TEMPLATE_TOKEN = re.compile(r"\{\{|\}\}|\{name\}")


def fill_template(template: str, name: str) -> str:
    """``template`` with every ``{name}`` outside :func:`literal` data replaced by ``name`` (``{{`` and ``}}``
    outside data read as one brace); the data is kept exactly. Nothing is a format string: no text can make
    this fail, whatever braces or percent signs it holds."""
    swap = {"{{": "{", "}}": "}", "{name}": name}
    out, inside = [], False
    for part in template.replace(_DATA_END, _DATA_START).split(_DATA_START):
        out.append(part if inside else _TEMPLATE_TOKEN.sub(lambda m: swap[m.group(0)], part))
        inside = not inside
    return "".join(out)


class ParameterError(UserError, ValueError):
    """A public parameter outside its allowed values; ``param`` is its Python name.

    ``template`` holds the message with ``{name}`` where the parameter's name
    goes, so the command line can put its flag there instead. The template is not a
    format string: ``{name}`` is the only placeholder, every other brace is text, and a
    value the user gave goes in as data (:func:`literal`, :func:`shown`), so that no text
    of theirs is ever read as a placeholder.
    """

    def __init__(self, param: str, template: str):
        self.param = param
        self.template = template
        super().__init__(fill_template(template, param))

    def message_for(self, name: str) -> str:
        """The message with ``name`` (e.g. a command-line flag) in place of the parameter's name."""
        return fill_template(self.template, name)


@dataclass(frozen=True)
class Interval:
    """A number of ``kind`` (int or float) between ``low`` and ``high`` (None = unbounded)."""

    kind: type
    low: float | None
    high: float | None
    closed: str = "both"  # "both", "left", "right", "neither"

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        if self.kind is int and not isinstance(value, numbers.Integral):
            return False
        if value != value:  # NaN
            return False
        lo_ok = self.low is None or (value >= self.low if self.closed in ("both", "left") else value > self.low)
        hi_ok = self.high is None or (value <= self.high if self.closed in ("both", "right") else value < self.high)
        return lo_ok and hi_ok

    def describe(self) -> str:
        what = "an integer" if self.kind is int else "a number"
        if self.low is not None and self.high is not None:
            left = "[" if self.closed in ("both", "left") else "("
            right = "]" if self.closed in ("both", "right") else ")"
            return f"{what} in {left}{self.low:g}, {self.high:g}{right}"
        if self.low is not None:
            return f"{what} {'>=' if self.closed in ('both', 'left') else '>'} {self.low:g}"
        if self.high is not None:
            return f"{what} {'<=' if self.closed in ('both', 'right') else '<'} {self.high:g}"
        return what


@dataclass(frozen=True)
class Options:
    """One of a fixed set of values."""

    values: tuple

    def __init__(self, values: Iterable):
        object.__setattr__(self, "values", tuple(values))

    def accepts(self, value: Any) -> bool:
        try:
            return value in self.values
        except TypeError:
            return False

    def describe(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)


@dataclass(frozen=True)
class Sequence:
    """A non-empty list or tuple whose every item satisfies ``item``."""

    item: Any

    def accepts(self, value: Any) -> bool:
        return (isinstance(value, (list, tuple)) and len(value) > 0
                and all(self.item.accepts(v) for v in value))

    def describe(self) -> str:
        return f"a non-empty list of {self.item.describe().replace('an integer', 'integers').replace('a number', 'numbers')}"


@dataclass(frozen=True)
class Kind:
    """An instance of one of ``types`` (e.g. ``Kind((str, os.PathLike))``)."""

    types: tuple
    name: str

    def accepts(self, value: Any) -> bool:
        return isinstance(value, self.types) and not (bool not in self.types and isinstance(value, bool))

    def describe(self) -> str:
        return self.name


def check(name: str, value: Any, constraints: Any) -> Any:
    """Raise :class:`ParameterError` unless ``value`` meets one of ``constraints``; return ``value``.

    ``constraints`` is a constraint or a list of them; ``None`` in the list allows None.
    """
    options = constraints if isinstance(constraints, list) else [constraints]
    if value is None and None in options:
        return value
    real = [c for c in options if c is not None]
    if any(c.accepts(value) for c in real):
        return value
    allowed = " or ".join(c.describe() for c in real)  # None (= the default) is not worth a mention
    raise ParameterError(name, "{name} must be " + literal(allowed) + ", not " + shown(value))


def check_all(values: Mapping[str, Any], spec: Mapping[str, Any]) -> None:
    """:func:`check` every name of ``spec`` that ``values`` holds."""
    for name, constraints in spec.items():
        if name in values:
            check(name, values[name], constraints)


def validate_params(spec: Mapping[str, Any]) -> Callable:
    """Decorator: check the named parameters of every call against ``spec`` before the body runs.

    The spec is kept on the function as ``__param_spec__`` (the command line reads
    defaults from the signature and the spec from there).
    """

    def decorate(fn: Callable) -> Callable:
        sig = inspect.signature(fn)
        unknown = set(spec) - set(sig.parameters)
        if unknown:  # a typo in the spec would silently check nothing
            raise TypeError(f"validate_params on {fn.__qualname__}: no parameter(s) {sorted(unknown)}")

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            bound = sig.bind_partial(*args, **kwargs)
            check_all(bound.arguments, spec)
            return fn(*args, **kwargs)

        wrapper.__param_spec__ = dict(spec)
        return wrapper

    return decorate


#: constraints used in many places
POSITIVE_INT = Interval(int, 1, None)
NON_NEGATIVE_INT = Interval(int, 0, None)
SEED = Interval(int, None, None)
FRACTION = Interval(float, 0, 1, closed="right")
N_JOBS = Interval(int, None, None)

__all__ = ["ParameterError", "fill_template", "literal", "shown", "Interval", "Options", "Sequence", "Kind", "check", "check_all", "validate_params",
           "POSITIVE_INT", "NON_NEGATIVE_INT", "SEED", "FRACTION", "N_JOBS"]
