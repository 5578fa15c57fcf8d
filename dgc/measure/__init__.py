"""Measurement: FLOPs, latency, calibration, channel usage, plateau, verdicts, claims and provenance."""
