"""The double's `hailo_platform.pyhailort` package (the real one holds `_pyhailort` and pyhailort.py)."""
