"""Writers for tables (CSV and LaTeX) and run manifests.

LaTeX tables use booktabs. The first line of every ``.tex`` file is a comment
``% requires: booktabs, ...`` naming the packages a document must load before
``\\input``-ing it.
"""

from __future__ import annotations

import json
import math
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .embeddings import _jsonable, atomic_write_text

LATEX_PACKAGES = ("booktabs",)

_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
}
_LATEX_RE = re.compile("|".join(re.escape(k) for k in _LATEX_SPECIAL))


def latex_escape(text: Any) -> str:
    """Escape LaTeX special characters in ``text`` (class names, file names...)."""
    return _LATEX_RE.sub(lambda m: _LATEX_SPECIAL[m.group(0)], str(text))


def _fmt(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "--"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.{digits}f}"
    return latex_escape(value)


def latex_table(
    df: pd.DataFrame,
    *,
    columns: Sequence[str] | None = None,
    headers: Mapping[str, str] | None = None,
    pm: Mapping[str, str] | None = None,
    bold: Mapping[str, str] | None = None,
    group_by: str | Sequence[str] | None = None,
    digits: int = 3,
    caption: str | None = None,
    label: str | None = None,
) -> str:
    """Render ``df`` as a booktabs LaTeX table.

    Parameters
    ----------
    columns : columns to show, in order (default: all).
    headers : display name per column (escaped); default the column name.
    pm : ``{mean_column: std_column}``; the cell shows ``mean $\\pm$ std`` and the
        std column is not shown on its own.
    bold : ``{column: "max" | "min"}``; the best value of that column is bolded
        *within each group* of ``group_by`` (e.g. each data fraction or each k),
        never over the whole table. Without ``group_by`` the whole table is one group.
    group_by : column(s) whose values define the groups for ``bold``; a midrule
        separates groups.
    """
    columns = list(columns) if columns is not None else list(df.columns)
    headers = dict(headers or {})
    pm = dict(pm or {})
    hidden = set(pm.values())
    shown = [c for c in columns if c not in hidden]
    group_cols = [group_by] if isinstance(group_by, str) else list(group_by or [])
    work = df.reset_index(drop=True)
    if group_cols:
        group_keys = [tuple(row) for row in work[group_cols].itertuples(index=False, name=None)]
    else:
        group_keys = [()] * len(work)
    best = _best_cells(work, dict(bold or {}), group_keys)

    lines = [f"% requires: {', '.join(LATEX_PACKAGES)}", r"\begin{table}[htbp]", r"\centering"]
    if caption:
        lines.append(rf"\caption{{{latex_escape(caption)}}}")
    if label:
        lines.append(rf"\label{{{label}}}")
    align = "".join("r" if pd.api.types.is_numeric_dtype(work[c]) else "l" for c in shown)
    lines += [rf"\begin{{tabular}}{{{align}}}", r"\toprule",
              " & ".join(latex_escape(headers.get(c, c)) for c in shown) + r" \\", r"\midrule"]
    prev_key = None
    for i, row in work.iterrows():
        if group_cols and prev_key is not None and group_keys[i] != prev_key:
            lines.append(r"\midrule")
        prev_key = group_keys[i]
        lines.append(" & ".join(_cell(row, c, pm, digits, best.get((i, c), False)) for c in shown) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def _best_cells(work: pd.DataFrame, bold: Mapping[str, str], group_keys: list[tuple]) -> dict[tuple[int, str], bool]:
    """``{(row, column): True}`` for the best value ("max" or "min") of each ``bold`` column within each group."""
    best: dict[tuple[int, str], bool] = {}
    for col, how in bold.items():
        if col not in work:
            continue
        vals = pd.to_numeric(work[col], errors="coerce")
        for key in dict.fromkeys(group_keys):
            rows = [i for i, k in enumerate(group_keys) if k == key]
            sub = vals.iloc[rows]
            if sub.notna().sum() == 0:
                continue
            target = sub.max() if how == "max" else sub.min()
            for i in rows:
                if vals.iloc[i] == target:
                    best[(i, col)] = True
    return best


def _cell(row: pd.Series, column: str, pm: Mapping[str, str], digits: int, bold: bool) -> str:
    """One table cell: the value (with ``$\\pm$ std`` for a ``pm`` column), bold when it is the best."""
    text = _fmt(row[column], digits)
    if column in pm and pm[column] in row.index:
        std = row[pm[column]]
        if text != "--" and not (isinstance(std, float) and math.isnan(std)):
            text = f"{text} $\\pm$ {_fmt(std, digits)}"
    return rf"\textbf{{{text}}}" if bold else text


def write_table(df: pd.DataFrame, stem: str | Path, *, tex: bool = True, **latex_kwargs: Any) -> list[Path]:
    """Write ``stem.csv`` (all columns) and, if ``tex``, ``stem.tex`` (see :func:`latex_table`)."""
    stem = Path(stem)
    written = [write_csv(df, stem.with_suffix(".csv"))]
    if tex:
        tex_path = stem.with_suffix(".tex")
        atomic_write_text(tex_path, latex_table(df, **latex_kwargs))
        written.append(tex_path)
    return written


def write_csv(df: pd.DataFrame, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, df.to_csv(index=False))
    return path


def required_packages(tex_path: str | Path) -> list[str]:
    """Packages named on the ``% requires:`` first line of a table file."""
    first = Path(tex_path).read_text(encoding="utf-8").splitlines()[0]
    m = re.match(r"%\s*requires:\s*(.*)", first)
    return [p.strip() for p in m.group(1).split(",") if p.strip()] if m else []


def compile_tex(tex_path: str | Path, timeout: float = 120) -> tuple[bool, str]:
    """``\\input`` a table into a plain article and run pdflatex on it.

    Returns (ok, log). Raises FileNotFoundError when pdflatex is not installed.
    """
    exe = shutil.which("pdflatex")
    if exe is None:
        raise FileNotFoundError("pdflatex is not installed")
    tex_path = Path(tex_path).resolve()
    pkgs = required_packages(tex_path)
    with tempfile.TemporaryDirectory() as tmp:
        doc = Path(tmp) / "doc.tex"
        uses = "".join(f"\\usepackage{{{p}}}\n" for p in pkgs)
        doc.write_text(
            "\\documentclass{article}\n" + uses + "\\begin{document}\n"
            f"\\input{{{tex_path.as_posix()}}}\n\\end{{document}}\n",
            encoding="utf-8",
        )
        proc = subprocess.run(
            [exe, "-interaction=nonstopmode", "-halt-on-error", doc.name],
            cwd=tmp,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        ok = proc.returncode == 0 and (Path(tmp) / "doc.pdf").is_file()
        return ok, proc.stdout[-4000:]


# ---------------------------------------------------------------------- manifests
_DISTRIBUTIONS = {"palaeo_ssl": "palaeo-ssl", "sklearn": "scikit-learn", "umap": "umap-learn", "PIL": "pillow"}


def library_versions(names: Iterable[str] = (
    "palaeo_ssl", "torch", "torchvision", "transformers", "huggingface_hub", "numpy", "scipy",
    "sklearn", "umap", "pandas", "matplotlib", "PIL",
)) -> dict[str, str]:
    """Versions of the libraries that shape the numbers, read from package metadata (nothing is imported).

    Missing libraries are left out.
    """
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = version(_DISTRIBUTIONS.get(name, name))
        except PackageNotFoundError:
            continue
    return out


def write_json(path: str | Path, data: Mapping[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(_jsonable(dict(data)), indent=2, default=str))
    return path


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def command_line() -> str:
    return " ".join(sys.argv)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (on Windows, the peak working set)."""
    try:
        import resource
    except ImportError:  # Windows has no resource module
        import psutil

        info = psutil.Process().memory_info()
        return getattr(info, "peak_wset", info.rss) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024
