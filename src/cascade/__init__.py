"""Cascade: an open lakehouse for Nightscout diabetes data."""

__version__ = "0.1.0"
