"""Side-by-side benchmarks: criproxy vs containerd's built-in CRI plugin on one containerd, one run."""
