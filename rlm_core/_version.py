"""The version of rlm-core (one place; the package facade and run metadata read it)."""

__version__ = "0.2.0"
