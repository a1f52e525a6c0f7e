"""Client tools over criproxy's debug socket: ``criproxy trace`` (the translation trace in a terminal)
and ``criproxy ui`` (the same, live, in a local web page beside the in-memory cache).

Both read ``<state>/debug.sock`` (mode 0600: only root can), so they sit at the top with the CLI and
import nothing of the running server.
"""
