"""goldmine's version, in a module of its own so that anything (the server's OpenAPI document, run metadata) can
read it without importing the package root and, with it, the Python API."""

__version__ = "0.1.0"
