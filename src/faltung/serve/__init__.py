"""``faltung serve``: a live page that shows what any trained model computes.

Draw a digit (or drop in an image, or pick a test image) and watch the probabilities,
every layer's feature maps and the saliency change as you draw. Click a channel of a
convolution to see its filter and the receptive-field sum behind one value.
"""

from .engine import BadRequest, Engine, single_thread_blas
from .server import PageServer, make_server

__all__ = ["BadRequest", "Engine", "PageServer", "make_server", "single_thread_blas"]
