"""Pictures and the HTML report: data (data.py), matplotlib figures (plots.py, the only module that imports matplotlib), the page (page.py)."""
