"""Device enrollment, CA and certificate tooling (device side and center reference side)."""
