"""Retention: what a garbage collection deletes and keeps (plan.py), leftovers of kills, and applying it (gc.py)."""
