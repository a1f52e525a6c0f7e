"""The cache: typed records of sandboxes and containers, and the name reservations.

Records are changed only through synchronous methods (atomic on the event loop); no lock is ever
held across an ``await``. containerd stays the source of truth: everything here can be rebuilt
from containerd's labels and extensions at start-up.
"""
