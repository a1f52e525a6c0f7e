"""The cache: typed records of sandboxes and containers, and the name reservations.

A record's state and status (what a list or status answer shows of it) change only through its
store's synchronous methods (``SandboxStore.set_state``/``set_exited``, ``ContainerStore.update_*``),
atomic on the event loop and bumping the store's generation so cached answers stay honest; no lock is
ever held across an ``await``. containerd stays the source of truth: everything here can be rebuilt
from containerd's labels and extensions at start-up.
"""
