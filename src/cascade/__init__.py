"""Cascade: an open lakehouse for Nightscout diabetes data."""
