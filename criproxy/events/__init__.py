"""The event relay: containerd task events in, CRI container events out (see ``relay.py``)."""
