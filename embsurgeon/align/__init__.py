"""Alignment: map a table onto a target vocabulary (matching, OOV initialization, transforms)."""
