"""The comparison report as one self-contained HTML page: the report's data, script and style inline.

Browsers refuse ``fetch`` of a file next to a page opened from disk, so the page carries the data
itself (a JSON script element) rather than reading report.json; nothing is loaded from elsewhere.
"""
from __future__ import annotations

import html
import json
from pathlib import Path

STATIC = Path(__file__).resolve().parent


def _inline(text: str) -> str:
    # "</" would end the script or style element early.
    return text.replace("</", "<\\/")


def write_page(report: dict) -> str:
    """index.html for ``report`` (the dict report.json holds)."""
    script = (STATIC / "report.js").read_text()
    style = (STATIC / "report.css").read_text()
    title = "Identity comparison: " + " vs ".join(report["trackers"])
    data = json.dumps(report, separators=(",", ":"))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>
{style}
</style>
</head>
<body>
<noscript>This report is drawn by JavaScript; the same data is in report.json beside this page.</noscript>
<div id="app"></div>
<script type="application/json" id="report-data">{_inline(data)}</script>
<script>
{_inline(script)}
</script>
</body>
</html>
"""
