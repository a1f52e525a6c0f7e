"""OCI runtime-spec building from small, individually tested options."""
