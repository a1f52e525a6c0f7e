"""The gRPC edge: turns CRI methods into handler calls, and our errors into status codes."""
