"""The engine layer: the only code that talks to stable-diffusion.cpp (through ``sdcpp.py``)."""
