"""consentgate: decide, enforce and prove which member data may be used for which purpose, when."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("consentgate")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = ["__version__"]
