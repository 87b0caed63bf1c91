"""Model definitions; importing this package registers every model."""
from . import classification  # noqa: F401
from . import shitu  # noqa: F401
from . import multilabel  # noqa: F401
