"""ovnvnet's development harness: the local stack, a played kubelet, the demo, the soak and the
test kit. Used by tests/, bench/ and the Makefile; not part of the ovnvnet package or its image.

It exists only in a checkout (``<checkout>/harness``), next to the files it runs: ``crds/``,
``hack/``, ``examples/``. ``REPO`` is that checkout, found from this file's own place and checked.
Run it from the checkout's root (``python -m harness.stack``; pytest's ``pythonpath``; bench/
puts the root on ``sys.path``).
"""
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if not (REPO / "crds").is_dir() or not (REPO / "operator" / "ovnvnet").is_dir():
    raise ImportError(f"the harness runs from an ovnvnet checkout, and {REPO} is not one "
                      "(no crds/ or operator/ovnvnet/ beside harness/)")
