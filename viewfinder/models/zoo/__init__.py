"""Model definitions; importing this package registers every model."""
from . import classification  # noqa: F401
