"""Measurement: FLOPs, latency, BatchNorm calibration, channel usage, the plateau criterion,
verdicts, claims and metrics loading, and provenance of every measured number.
"""
