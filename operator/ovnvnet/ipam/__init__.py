"""Pure address allocation (no Kubernetes, no OVN)."""

from .allocator import AllocationError, Holder, NetworkExhausted, SubnetAllocator

__all__ = ["AllocationError", "Holder", "NetworkExhausted", "SubnetAllocator"]
