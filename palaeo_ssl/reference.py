"""Published figures of Rodgers (2025) and the side-by-side comparison with a run.

The project carries the key published numbers as a small data file,
``palaeo_ssl/data/rodgers2025_key_figures.csv`` (long format: dataset, section,
setting, method, metric, value), extracted from the result tables published
with the paper (DINOv3 ViT-L/16, CLS features, 224 x 224 squash). The same
extraction is applied to a run's own paper-protocol tables, so the two line up
key for key.

Rebuild the data file from the published tables with::

    python -m palaeo_ssl.reference PATH/TO/reference/rodgers2025
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Mapping

import pandas as pd

from .errors import UserError

DATA_FILE = Path(__file__).with_name("data") / "rodgers2025_key_figures.csv"
KEY = ["section", "setting", "method", "metric"]

#: dataset id -> (display name, images, classes, best CNN top-1 in the literature used in the paper's plots)
DATASETS: dict[str, tuple[str, int, int, float]] = {
    "fossil_tracks": ("Dinosaur tracks (Lallensack et al. 2022)", 1671, 2, 0.8600),
    "pollen": ("New Zealand pollen (Sevillano et al. 2020)", 19667, 46, 0.9786),
    "radiolaria": ("Podocyrtis radiolarians (Carlsson et al. 2022)", 1085, 8, 0.8846),
    "endless_forams": ("Endless Forams (Hsiang et al. 2019)", 27729, 35, 0.8740),
    "diverse_fossils": ("Diverse fossils (Zenodo 6333970)", 59244, 50, 0.8297),
}
LOW_FRACTION = 0.1
FULL_FRACTION = 1.0
FEW_SHOT_K = (1, 5, 10)


def _num(x) -> float:
    return float(pd.to_numeric(x, errors="coerce"))


def key_figures(classification: pd.DataFrame | None = None, few_shot: pd.DataFrame | None = None,
                clustering: pd.DataFrame | None = None, morphology: pd.DataFrame | None = None) -> pd.DataFrame:
    """Key figures from tables in the reference layout (a run's paper-protocol tables or the published ones).

    Returns a long DataFrame with columns ``section, setting, method, metric, value``.
    """
    rows: list[tuple[str, str, str, str, float]] = []
    if classification is not None and len(classification):
        c = classification.copy()
        c["train_fraction"] = pd.to_numeric(c["train_fraction"], errors="coerce")
        for frac, label in ((FULL_FRACTION, "full data"), (LOW_FRACTION, "10% of data")):
            sub = c[(c["train_fraction"] - frac).abs() < 1e-9]
            for _, r in sub.iterrows():
                for col, metric in (("mean_top1_accuracy", "top-1 accuracy"),
                                    ("mean_balanced_accuracy", "balanced accuracy")):
                    if col in r:
                        rows.append(("classification", label, str(r["classifier"]), metric, _num(r[col])))
    if few_shot is not None and len(few_shot):
        f = few_shot.copy()
        kcol = "few_shot_values" if "few_shot_values" in f else "k"
        f[kcol] = pd.to_numeric(f[kcol], errors="coerce")
        for k in FEW_SHOT_K:
            for _, r in f[f[kcol] == k].iterrows():
                rows.append(("few-shot", f"{k}-shot", str(r["classifier"]), "top-1 accuracy",
                             _num(r["mean_top1_accuracy"])))
    if clustering is not None and len(clustering):
        for _, r in clustering.iterrows():
            algo = str(r["Algorithm"])
            if algo in ("KMeans (Known K)", "HDBSCAN"):
                rows.append(("clustering", str(r["Pipeline"]), algo, "ARI", _num(r["ARI"])))
                if algo == "HDBSCAN" and "Noise Fraction" in r:
                    rows.append(("clustering", str(r["Pipeline"]), algo, "noise fraction", _num(r["Noise Fraction"])))
    if morphology is not None and len(morphology):
        r = morphology.iloc[0]
        for col, metric in (("mean_pairwise_distance", "mean pairwise cosine distance"),
                            ("effective_rank", "effective rank")):
            if col in r:
                rows.append(("disparity", "all images", "L2-normalised features", metric, _num(r[col])))
    return pd.DataFrame(rows, columns=KEY + ["value"])


def build_data_file(reference_dir: str | Path, out: str | Path = DATA_FILE) -> Path:
    """Extract the key figures of every dataset folder under ``reference_dir`` into ``out``."""
    reference_dir = Path(reference_dir)
    frames = []
    for ds in DATASETS:
        folder = reference_dir / ds
        if not folder.is_dir():
            raise UserError(f"{folder} is missing: expected one folder per dataset ({', '.join(DATASETS)})")

        def read(name: str) -> pd.DataFrame | None:
            p = folder / name
            return pd.read_csv(p) if p.is_file() else None

        kf = key_figures(read("classification_cv_results.csv"), read("few_shot_cv_results.csv"),
                         read("clustering_metrics.csv"), read("morphology_report.csv"))
        kf.insert(0, "dataset", ds)
        frames.append(kf)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    pd.concat(frames, ignore_index=True).to_csv(out, index=False, float_format="%.6g")
    return out


def published(dataset: str) -> pd.DataFrame:
    """The published key figures of one dataset (long format, see :func:`key_figures`)."""
    if dataset not in DATASETS:
        raise UserError(f"unknown reference dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    table = pd.read_csv(DATA_FILE)
    return table[table["dataset"] == dataset].drop(columns="dataset").reset_index(drop=True)


def compare(dataset: str, run_tables: Mapping[str, pd.DataFrame | None]) -> pd.DataFrame:
    """This run's key figures beside the published ones of ``dataset``, with differences.

    ``run_tables`` maps ``classification``, ``few_shot``, ``clustering``,
    ``morphology`` to this run's paper-protocol tables (missing ones are left out).
    Returns columns ``section, setting, method, metric, published, this_run, difference``.
    """
    pub = published(dataset).rename(columns={"value": "published"})
    ours = key_figures(run_tables.get("classification"), run_tables.get("few_shot"), run_tables.get("clustering"),
                       run_tables.get("morphology")).rename(columns={"value": "this_run"})
    merged = pub.merge(ours, on=KEY, how="outer", sort=False)
    merged["difference"] = merged["this_run"] - merged["published"]
    return merged[KEY + ["published", "this_run", "difference"]]


if __name__ == "__main__":  # pragma: no cover - maintenance entry point
    if len(sys.argv) != 2:
        sys.exit("usage: python -m palaeo_ssl.reference PATH/TO/reference/rodgers2025")
    print(f"wrote {build_data_file(sys.argv[1])}")
