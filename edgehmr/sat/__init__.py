"""SAT-HMR's multi-person pipeline: full-frame preprocessing, reference bundles, two-stage multi-bucket
artifacts, the runner that executes them on any target, and per-bucket validation."""
