"""The identity comparison report of tools/compare.py: CLEAR's matching replayed (matching.py), event crops
(images.py) and the self-contained page (page.py, report.js, report.css)."""
