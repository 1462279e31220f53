"""Browser end-to-end tests of the Dagster UI (Playwright driving Debian's Chromium)."""
