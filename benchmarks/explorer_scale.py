"""How the explorer scales with the number of specimens: the folder page against the one-file page.

For each N it writes the explorer with the data a run gives it (2-D
coordinates, labels in 50 classes, 4 clusterings, outlier and suspect scores,
3 labelling scores, predicted classes, 10 nearest neighbours with
similarities, a thumbnail for every specimen: the synthetic example images,
cycled) and measures in headless Chromium:

- the page's size in bytes per specimen beyond plotly.js (the HTML file alone),
  and the bytes per specimen of the folder beside it (data scripts, thumbnails);
- first paint: seconds from navigation to the first drawn plot (the page sets
  ``body[data-ready]`` once plotly's drawing promise resolves);
- hover: seconds from moving onto a specimen to its tooltip with the thumbnail
  decoded, and click: seconds from a click to its nearest-neighbour list (a folder
  page loads that neighbour file then), each the mean over 5 specimens;
- console errors.

The baseline is the one-file page (everything inlined) of the same N in the same
run, measured up to ``--single-file-up-to`` specimens (larger one-file pages take
minutes or do not open at all); the last columns are folder/one-file ratios.

    python benchmarks/explorer_scale.py [--sizes 20000 200000] [--single-file-up-to 20000]

Needs chromium (``/usr/bin/chromium``) and the playwright package. Times on a
shared CPU are noisy; headless Chromium renders WebGL in software (SwiftShader),
so the numbers are pessimistic compared to a desktop with a GPU.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from palaeo_ssl.explorer import companion_folder, write_explorer
from palaeo_ssl.synthetic import make_example_dataset

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

# five specimens spread over the index range (so a folder page loads several neighbour files), each moved to an
# empty spot above the cloud first, so the pointer lands on it and not on a neighbour drawn on top
PROBES_JS = """() => {
  const gd = document.getElementById('plot'), fl = gd._fullLayout, r = gd.getBoundingClientRect();
  const d = palaeoExplorer.data, out = [];
  for (let k = 0; k < 5; k++) {
    const i = Math.floor((k + 0.5) * d.x.length / 5);
    out.push([r.left + fl._size.l + fl.xaxis.l2p(d.x[i]), r.top + fl._size.t + fl.yaxis.l2p(d.y[i]), i]);
  }
  return out;
}"""
THUMB_SHOWN = ("i => { const t = document.getElementById('tooltip'); const im = t.querySelector('img.thumb');"
               " return !t.hidden && t.dataset.index === String(i) && im && im.complete && im.naturalWidth > 0; }")


def make_inputs(n: int, files: list[str], seed: int = 0) -> tuple[np.ndarray, dict]:
    """Coordinates and the other explorer inputs of ``n`` synthetic specimens (50 classes), images cycled."""
    rng = np.random.default_rng(seed)
    k = 50
    centre = rng.normal(scale=6.0, size=(k, 2))
    labels = rng.integers(0, k, n)
    coords = centre[labels] + rng.normal(size=(n, 2))
    # the probed specimens sit apart, on a row above the cloud
    top = coords[:, 1].max() + 3.0
    for j in range(5):
        i = int((j + 0.5) * n / 5)
        coords[i] = [coords[:, 0].min() + (j + 1) * (np.ptp(coords[:, 0]) / 6), top]
    labels[rng.random(n) < 0.3] = -1
    nb = rng.integers(0, n, (n, 11))
    nb[:, 0] = np.arange(n)
    kw = dict(paths=[f"taxon_{labels[i] % k:02d}/specimen_{i:07d}.jpg" for i in range(n)],
              class_names=[f"Genus_species_{c:02d}" for c in range(k)], labels=labels,
              image_files=[files[i % len(files)] for i in range(n)],
              clusters={f"pipeline {j} / kmeans": rng.integers(-1, 40, n) for j in range(4)},
              outlier_score=rng.random(n), suspect_score=np.where(labels >= 0, rng.random(n), np.nan),
              neighbours=nb, neighbour_sim=np.sort(rng.random((n, 11)), axis=1)[:, ::-1],
              scores={"suggestion rank": np.where(labels < 0, rng.permutation(n) + 1.0, np.nan),
                      "confidence": rng.random(n), "novelty": rng.random(n)},
              predicted=np.where(labels < 0, rng.integers(-1, k, n), -1), data_root="/data/collection")
    return coords, kw


def folder_bytes(page: Path) -> tuple[int, int]:
    """(bytes of the data scripts, bytes of the thumbnails) beside a folder page (0, 0 for a one-file page)."""
    folder = companion_folder(page)
    data = sum(f.stat().st_size for f in (folder / "data").glob("*.js")) if folder.is_dir() else 0
    thumbs = sum(f.stat().st_size for f in (folder / "thumbnails").rglob("*.jpg")) if folder.is_dir() else 0
    return data, thumbs


def measure(browser, path: Path) -> dict:
    """First paint, hover and click latencies (seconds) and the console errors of the page at ``path``."""
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    t0 = time.perf_counter()
    page.goto(path.as_uri(), timeout=600_000)
    page.wait_for_selector("body[data-ready='1']", timeout=600_000)
    first_paint = time.perf_counter() - t0
    gl = page.evaluate("document.getElementById('plot').data[0].type") == "scattergl"
    hover, click = [], []
    for x, y, i in page.evaluate(PROBES_JS):
        page.mouse.move(5, 5)
        page.wait_for_function("document.getElementById('tooltip').hidden", timeout=60_000)
        t = time.perf_counter()
        page.mouse.move(x, y)
        page.wait_for_function(THUMB_SHOWN, arg=i, timeout=60_000)
        hover.append(time.perf_counter() - t)
        t = time.perf_counter()
        page.mouse.click(x, y)
        page.wait_for_function(f"document.querySelectorAll('#neighbours li.neighbour').length > 0 && "
                               f"palaeoExplorer.nameOf({i}) === document.querySelector('#selected-card .name')"
                               ".textContent", timeout=60_000)
        click.append(time.perf_counter() - t)
    page.close()
    return {"first_paint": first_paint, "hover": statistics.mean(hover), "click": statistics.mean(click),
            "errors": errors, "webgl": gl}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 200_000], help="numbers of specimens")
    parser.add_argument("--single-file-up-to", type=int, default=20_000,
                        help="also measure the one-file page (the baseline) up to this many specimens")
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="chromium executable")
    args = parser.parse_args()
    from plotly.offline import get_plotlyjs
    from playwright.sync_api import sync_playwright

    plotly_bytes = len(get_plotlyjs().encode("utf-8"))
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        tmp = Path(tmp)
        root = make_example_dataset(tmp / "ds", n_per_class=20, seed=0, size=160)
        files = sorted(str(f) for f in root.rglob("*.jpg"))
        browser = p.chromium.launch(executable_path=args.chromium, args=ARGS)
        print(f"{'N':>7} {'layout':>9} {'write s':>8} {'page B/sp':>9} {'data B/sp':>9} {'thumb B/sp':>10} | "
              f"{'paint s':>7} {'hover ms':>8} {'click ms':>8} {'errors':>6} | {'paint ratio':>11} "
              f"{'hover ratio':>11}", flush=True)
        for n in args.sizes:
            coords, kw = make_inputs(n, files)
            res = {}
            for single in ([True, False] if n <= args.single_file_up_to else [False]):
                t = time.perf_counter()
                path = write_explorer(tmp / f"{n}_{'one' if single else 'folder'}.html", coords, single_file=single,
                                      **kw)
                write_s = time.perf_counter() - t
                data_b, thumb_b = folder_bytes(path)
                m = measure(browser, path)
                res[single] = m
                ratio = ""
                if not single and True in res:
                    ratio = (f"{m['first_paint'] / res[True]['first_paint']:>11.2f} "
                             f"{m['hover'] / res[True]['hover']:>11.2f}")
                print(f"{n:>7} {'one file' if single else 'folder':>9} {write_s:>8.1f} "
                      f"{(path.stat().st_size - plotly_bytes) / n:>9.1f} {data_b / n:>9.1f} {thumb_b / n:>10.1f} | "
                      f"{m['first_paint']:>7.2f} {m['hover'] * 1e3:>8.0f} {m['click'] * 1e3:>8.0f} "
                      f"{len(m['errors']):>6} | {ratio}", flush=True)
                for e in m["errors"][:3]:
                    print("   console error:", e)
                if not m["webgl"]:
                    print("   (drawn with SVG: this chromium has no WebGL)")
                path.unlink()
        browser.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
