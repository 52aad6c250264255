"""Datasets pages (import wizard, list, tabs) -- being written."""
