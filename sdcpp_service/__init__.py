"""sdcpp-service: stable-diffusion.cpp as a library, a CLI and an HTTP service.

The documented library surface is exactly ``__all__``.
"""

from __future__ import annotations

from sdcpp_service._version import __version__
from sdcpp_service.config import Settings
from sdcpp_service.errors import SdcppError

__all__ = ["Settings", "SdcppError", "__version__"]
