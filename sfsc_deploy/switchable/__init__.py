"""Switchable layers: channel arithmetic, layers that run at any width and hand back their plain
twins, and the factories an architecture is written against."""
