"""How the explorer page scales with the number of specimens: SVG ``scatter`` vs WebGL ``scattergl``.

For each N it writes one page per renderer (same data, thumbnails of the
synthetic example images cycled so every point has one) and measures, in
headless Chromium: the file size, the time from navigation to the first drawn
plot, and the hover latency (mouse move -> thumbnail tooltip shown, mean of 5
hovers). It prints WebGL/SVG ratios: the baseline is the SVG page of the same N
in the same run. This is what :data:`palaeo_ssl.explorer.WEBGL_THRESHOLD` is
chosen from.

    python benchmarks/explorer_scale.py [--sizes 1000 2500 10000 20000]

Needs chromium (``/usr/bin/chromium``) and the playwright package. Times on a
shared CPU are noisy; headless Chromium renders WebGL in software (SwiftShader),
so WebGL numbers are pessimistic compared to a desktop with a GPU.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from palaeo_ssl.explorer import write_explorer
from palaeo_ssl.synthetic import make_example_dataset

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

HOVER_JS = """async () => {
  const gd = document.getElementById('plot'), fl = gd._fullLayout, r = gd.getBoundingClientRect();
  const d = palaeoExplorer.data, out = [];
  for (let k = 0; k < 5; k++) {
    const i = Math.floor((k + 0.5) * d.x.length / 5);
    out.push([r.left + fl._size.l + fl.xaxis.l2p(d.x[i]), r.top + fl._size.t + fl.yaxis.l2p(d.y[i]), i]);
  }
  return out;
}"""


def measure(browser, path: Path) -> tuple[float, float]:
    """(seconds to first drawn plot, mean hover latency in seconds) of the page at ``path``."""
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    t0 = time.perf_counter()
    page.goto(path.as_uri(), timeout=300_000)
    page.wait_for_selector("body[data-ready='1']", timeout=300_000)
    load = time.perf_counter() - t0
    lat = []
    for x, y, i in page.evaluate(HOVER_JS):
        page.mouse.move(5, 5)
        page.wait_for_function("document.getElementById('tooltip').hidden", timeout=60_000)
        t = time.perf_counter()
        page.mouse.move(x, y)
        page.wait_for_selector("#tooltip:not([hidden])", timeout=60_000)
        lat.append(time.perf_counter() - t)
    page.close()
    return load, statistics.mean(lat)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 2500, 10000, 20000],
                        help="numbers of specimens to try")
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="chromium executable")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        tmp = Path(tmp)
        root = make_example_dataset(tmp / "ds", n_per_class=20, seed=0, size=160)
        files = sorted(str(f) for f in root.rglob("*.jpg"))
        browser = p.chromium.launch(executable_path=args.chromium, args=ARGS)
        print(f"{'N':>7} {'MB':>6} {'write s':>8} | {'SVG load s':>10} {'hover ms':>9} | "
              f"{'GL load s':>9} {'hover ms':>9} | {'load GL/SVG':>11} {'hover GL/SVG':>12}")
        for n in args.sizes:
            rng = np.random.default_rng(n)
            coords = rng.normal(size=(n, 2)) + rng.integers(0, 5, n)[:, None] * 3.0
            kw = dict(paths=[f"specimen_{i:06d}.jpg" for i in range(n)], class_names=[f"c{k}" for k in range(5)],
                      labels=rng.integers(-1, 5, n), image_files=[files[i % len(files)] for i in range(n)],
                      outlier_score=rng.random(n), suspect_score=rng.random(n),
                      neighbours=rng.integers(0, n, (n, 10)), neighbour_sim=rng.random((n, 10)))
            res = {}
            for gl in (False, True):
                t = time.perf_counter()
                path = write_explorer(tmp / f"{n}_{gl}.html", coords, webgl=gl, **kw)
                write_s = time.perf_counter() - t
                res[gl] = (write_s, path.stat().st_size / 1e6, *measure(browser, path))
            (ws, mb, l0, h0), (_, _, l1, h1) = res[False], res[True]
            print(f"{n:>7} {mb:>6.1f} {ws:>8.1f} | {l0:>10.2f} {h0 * 1e3:>9.0f} | {l1:>9.2f} {h1 * 1e3:>9.0f} | "
                  f"{l1 / l0:>11.2f} {h1 / h0:>12.2f}", flush=True)
        browser.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
