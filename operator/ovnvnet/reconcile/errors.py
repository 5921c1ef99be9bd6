"""The reconcilers' own exceptions: what went wrong, said in the project's terms.

Nothing under reconcile/ raises a Kopf exception: the pod path is not run by Kopf (reconcile/podwatch.py
watches pods itself) and would never see one. `main.py`, where Kopf runs the VirtualNetwork handlers,
translates `RetryLater` into `kopf.TemporaryError`.
"""
from __future__ import annotations


class RetryLater(Exception):
    """A transient failure (NB transaction, API call): nothing is left half-done and the same
    work is tried again after `delay` seconds (the pod retry loop, or Kopf for networks)."""

    def __init__(self, message: str, *, delay: float = 1.0):
        super().__init__(message)
        self.delay = delay


class RequestRefused(Exception):
    """The request cannot be served now. `retry` says whether a later change elsewhere (a network
    appearing, an address freeing) may make it work without the pod changing."""

    def __init__(self, message: str, *, retry: bool, reason: str):
        super().__init__(message)
        self.retry = retry
        self.reason = reason
