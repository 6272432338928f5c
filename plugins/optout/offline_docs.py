"""Data Docs that open without the internet: GX's pages load Bootstrap, jQuery, Vega and fonts from CDNs,
a logo (with the data context's id) from S3, and link to GX's site. Governance staff read them on
machines that may have no internet, and a proof page should not call out to anyone.

The pages are already complete HTML (GX renders every table on the server); its scripts only add
sorting, filters and charts. So every external script, stylesheet, image and link is taken out, every
script with them (they need jQuery), and a small stylesheet of our own keeps the tables readable.
Nothing is vendored.
"""

from __future__ import annotations

import re
from pathlib import Path

from optout.atomic import write_bytes

STYLE = """<style>
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 1.5rem; color: #1d2733; }
a { color: #005eb8; }
table { border-collapse: collapse; margin: .5rem 0 1rem; }
th, td { border: 1px solid #c8ced6; padding: .3rem .6rem; text-align: left; vertical-align: top; }
th { background: #eef1f4; }
.alert-danger, .text-danger { color: #a4161a; }
.alert-success, .text-success { color: #1b6b2f; }
.badge { border: 1px solid currentColor; border-radius: .3rem; padding: 0 .3rem; }
.d-none, .modal, .navbar-toggler, .btn-group { display: none; }
ul.nav { list-style: none; padding-left: 0; }
</style>"""

_EXTERNAL = r"""["'](?:https?:)?//[^"']*["']"""
_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script\s*>", re.S | re.I)
_LINK = re.compile(rf"<link\b[^>]*href={_EXTERNAL}[^>]*>", re.S | re.I)
_IMG = re.compile(rf"<img\b[^>]*src={_EXTERNAL}[^>]*>", re.S | re.I)
_HREF = re.compile(rf"\bhref={_EXTERNAL}", re.I)
_CSS_URL = re.compile(r"url\(\s*['\"]?(?:https?:)?//[^)]*\)", re.I)
_URL = re.compile(r"https?://[^\s\"'<>)]+", re.I)


def make_offline(site: Path) -> int:
    """Rewrite every HTML page under ``site`` so it references nothing outside it; returns how many."""
    pages = sorted(site.rglob("*.html"))
    for page in pages:
        write_bytes(page, offline_html(page.read_text(encoding="utf-8")).encode("utf-8"))
    return len(pages)


def offline_html(html: str) -> str:
    """One page without external resources, scripts or links, with our stylesheet in its head."""
    html = _SCRIPT.sub("", html)
    html = _LINK.sub("", html)
    html = _IMG.sub("", html)
    html = _HREF.sub('href="#"', html)
    html = _CSS_URL.sub("none", html)
    html = _URL.sub("", html)  # what is left is text that merely names a site
    head = re.search(r"<head\b[^>]*>", html, re.I)
    if head is None:
        return STYLE + html
    return html[: head.end()] + STYLE + html[head.end() :]
