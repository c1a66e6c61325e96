"""An application whose import fails: the worker cannot boot."""

raise RuntimeError("boot_error_app refuses to import")
