"""Images: reference parsing, the registry client and puller, and local image lookup."""
