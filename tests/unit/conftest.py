"""Unit tests: pure functions only (no network, no cluster)."""

import sys
from pathlib import Path

try:
    import ovnvnet  # noqa: F401  (installed, e.g. editable in .venv)
except ImportError:  # running from a bare checkout: operator/ is the source folder
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "operator"))
