"""Where the tests find the project and the shared real CT data (beside the project)."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = PROJECT_ROOT.parent / "shared"
CTDATA = SHARED / "ctdata"
ENRICHMENT = SHARED / "enrichment"
PHISHING = SHARED / "phishing"
