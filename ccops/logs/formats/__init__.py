"""The log formats ccops reads, one module each.

A module here defines `FORMAT = LogFormat(...)` (ccops.logs.format) and is found by name
on first use: adding a format is adding a module (and its tests), nothing else changes.
The setting logs.format names the one a deployment writes.
"""
