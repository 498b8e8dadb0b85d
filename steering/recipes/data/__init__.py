"""Data files the recipes ship (the "dual" recipe's example notes in `notes/`), read with importlib.resources."""
