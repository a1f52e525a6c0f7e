"""Container and exec stdio: FIFOs, the CRI log pump, log rotation (see ``container.py``)."""
