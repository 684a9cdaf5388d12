"""Browser tests: JupyterLab driven by headless Debian chromium (see harness.py)."""
