"""Helpers shared by test modules and benchmarks: plain functions, classes and constants,
imported from here (fixtures stay in the conftest.py files, which may use these)."""
