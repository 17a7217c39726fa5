"""gpusupply: an open-source GPU Supply Service."""

__version__ = "0.1.0"
