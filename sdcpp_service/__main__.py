"""``python -m sdcpp_service`` runs the ``sdcpp`` command."""

from __future__ import annotations

from sdcpp_service.cli import main

main()
