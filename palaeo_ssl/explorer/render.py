"""Rendering: the explorer's data payload into one self-contained HTML page.

``page.html`` is a :class:`string.Template` whose placeholders are filled
here, and only with: ``html.escape``-d text (``title``, ``notice``, ``csp``),
a number (``count``), the payload as safe JSON (``data``: no raw ``<``, ``>``,
``&`` or U+2028/9, so ``</script>`` cannot end its block) and static code
(``css`` from ``style.css``, ``plotly_js`` from the plotly package, ``app_js``
from ``app.js``, ``labelling_js`` from ``labelling.js``) and, on a folder page,
``parts``: the ``<script src>`` of its specimens file (an escaped relative URL).
The Content-Security-Policy admits exactly the three inline scripts, by SHA-256
hash, and ``data:`` images; a folder page's policy adds scripts and images of
its own origin (``'self'``: the files beside it).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from importlib import resources
from string import Template
from typing import Any


def read_asset(name: str) -> str:
    """The text of one of the explorer's package files (``page.html``, ``app.js``, ``labelling.js``, ``style.css``)."""
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def safe_json(obj: Any) -> str:
    """JSON that is safe inside ``<script type="application/json">``: no ``<``, ``>``, ``&`` or U+2028/9 left raw."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for raw, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(raw, esc)
    return text


def csp_hash(script: str) -> str:
    """The CSP source expression (``'sha256-...'``) that admits the inline ``script``."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii") + "'"


def notice_html(notice: str | None) -> str:
    """The header banner for ``notice`` (escaped text), or nothing when there is no notice."""
    if not notice:
        return ""
    return f'<p id="notice" role="note">{html.escape(str(notice))}</p>\n  '


def _inlinable(code: str, what: str, end_tag: str) -> str:
    if end_tag in code.lower():  # never true for plotly's bundle or our files; guards the inlining
        raise RuntimeError(f"{what} contains '{end_tag}' and cannot be inlined safely")
    return code


def render_page(payload: dict[str, Any], *, notice: str | None = None) -> str:
    """The page (HTML text) showing ``payload`` (see :mod:`.payload`), with an optional ``notice`` banner.

    A folder page (``payload["parts"]`` set, see :mod:`.folder`) loads its
    specimens file with a ``<script src>`` and may load files beside it.
    """
    from plotly.offline import get_plotlyjs

    plotly_js = _inlinable(get_plotlyjs(), "plotly.js bundle", "</script")
    app_js = _inlinable(read_asset("app.js"), "app.js", "</script")
    labelling_js = _inlinable(read_asset("labelling.js"), "labelling.js", "</script")
    css = _inlinable(read_asset("style.css"), "style.css", "</style")
    parts = payload.get("parts")
    own = " 'self'" if parts else ""
    csp = (
        "default-src 'none'; "
        f"script-src {csp_hash(plotly_js)} {csp_hash(app_js)} {csp_hash(labelling_js)}{own} 'unsafe-eval'; "
        f"style-src 'unsafe-inline'; img-src{own} data: blob:; font-src data:; worker-src blob:"
    )
    parts_html = f'<script src="{html.escape(parts["specimens"], quote=True)}"></script>\n' if parts else ""
    return Template(read_asset("page.html")).substitute(
        csp=html.escape(csp, quote=True),
        title=html.escape(str(payload["title"])),
        notice=notice_html(notice),
        css=css,
        count=len(payload["x"]),
        data=safe_json(payload),
        plotly_js=plotly_js,
        app_js=app_js,
        labelling_js=labelling_js,
        parts=parts_html,
    )
