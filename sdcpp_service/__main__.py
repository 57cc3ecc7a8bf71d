"""``python -m sdcpp_service`` runs the ``sdcpp`` command."""

from __future__ import annotations

from sdcpp_service._launch import main

main()
