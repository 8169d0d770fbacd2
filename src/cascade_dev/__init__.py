"""Cascade's development platform: the fake Nightscout, the local service stack and the demo.

It imports the product (`cascade`) and plugs its commands into the CLI; the product never
imports it.
"""
