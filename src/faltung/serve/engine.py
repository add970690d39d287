"""What the live page asks for, as plain arrays: no HTTP here (see ``server.py``).

One update is a forward pass that keeps every layer's output, each output scaled to bytes,
and the saliency of the top class through ``model.backward`` (in eval mode).
"""

from __future__ import annotations

import base64
import binascii
import threading
from typing import Any

import numpy as np

from .._threads import openblas_threads
from ..explain import conv_layers, conv_sum, eval_backprop, to_uint8
from ..explain.features import predict_probabilities, probabilities
from ..explain.mistakes import rank_mistakes
from ..layers import Conv2D
from ..model import Sequential
from ..summary import dry_run


def single_thread_blas() -> bool:
    """Run NumPy's products on one BLAS thread: through its OpenBLAS's own setter, or, for
    another BLAS, through threadpoolctl (the ``serve`` extra) if it is installed. False
    where neither can.

    An update multiplies the matrices of one image: too small to split between threads, and
    on a busy machine a second BLAS thread mostly waits for a core (bench/serve_latency.py).
    """
    blas = openblas_threads()
    if blas is not None:
        blas.set(1)
        return True
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return False
    threadpool_limits(1, user_api="blas")
    return True


# Test images per step of the mistakes pass (see Engine.mistakes).
MISTAKES_CHUNK = 256


class BadRequest(ValueError):
    """The request is malformed; the message goes back to the page with status 400."""


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=np.uint8).tobytes()).decode()


class Engine:
    """A model and, optionally, test images to show; thread-safe (one computation at a time)."""

    def __init__(
        self,
        model: Sequential,
        shape: tuple[int, int, int],
        classes: list[str],
        title: str = "",
        test_images: np.ndarray | None = None,
        test_labels: np.ndarray | None = None,
        test_note: str = "",
    ) -> None:
        self.model = model.eval()
        self.shape = tuple(shape)
        self.classes = classes
        self.title = title
        self.test_images, self.test_labels = test_images, test_labels
        self.test_note = test_note
        self._lock = threading.Lock()  # the model computes one request at a time
        self._mistakes_lock = threading.Lock()
        self._mistakes: np.ndarray | None = None
        self._rng = np.random.default_rng()
        self._layers = [
            {"name": name, "type": type(layer).__name__, "shape": list(y.shape[1:])}
            for name, layer, y in dry_run(model, self.shape)
        ]

    # -- requests ----------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "shape": list(self.shape),
            "classes": self.classes,
            "layers": self._layers,
            "convolutions": conv_layers(self.model),
            "test_images": self.test_images is not None,
            "test_note": self.test_note,
        }

    def update(self, payload: Any) -> dict[str, Any]:
        """Probabilities, every layer's output as bytes, and the saliency of the top class."""
        x = self.pixels(payload)
        with self._lock:
            layers = []
            with eval_backprop(self.model):
                for name, out in self.model.forward_each(x[None]):
                    value = out[0]
                    low, high = float(value.min()), float(value.max())
                    layers.append({"name": name, "min": low, "max": high,
                                   "data": _b64(to_uint8(value, low, high))})  # fmt: skip
                scores = out[0]
                top = int(scores.argmax())
                seed = np.zeros_like(out)
                seed[0, top] = 1
                grad = self.model.backward(seed)[0]
        probs = probabilities(self.model, scores[None].astype(np.float64))[0]
        heat = np.abs(grad).max(axis=0)
        return {
            "probabilities": [round(float(p), 5) for p in probs],
            "top": top,
            "layers": layers,
            "saliency": _b64(to_uint8(heat, 0.0, float(heat.max()) or 1.0)),
        }

    def convolution(self, payload: Any) -> dict[str, Any]:
        """One output value of a convolution as the sum over its receptive field."""
        x = self.pixels(payload)
        layer, channel, row, col = (payload.get(k) for k in ("layer", "channel", "row", "col"))
        if layer not in conv_layers(self.model):
            raise BadRequest(f"layer must be one of the convolutions {conv_layers(self.model)}")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (channel, row, col)):
            raise BadRequest("channel, row and col must be integers")
        with self._lock:
            try:
                found = conv_sum(self.model, x, layer, channel, row, col)
            except ValueError as error:
                raise BadRequest(str(error)) from None
        names = list(self.model.layers)
        index = names.index(layer)
        conv: Conv2D = self.model.layers[layer]
        return {
            "layer": layer,
            "channel": channel,
            "row": row,
            "col": col,
            "input": "input" if index == 0 else names[index - 1],
            "input_channels": [found.input_channels.start, found.input_channels.stop],
            "top": found.top,
            "left": found.left,
            "stride": list(conv.stride),
            "dilation": list(conv.dilation),
            "patch": found.patch.round(5).tolist(),
            "weight": found.weight.round(5).tolist(),
            "partial_sums": found.products.sum(axis=(1, 2), dtype=np.float64).round(5).tolist(),
            "bias": round(found.bias, 5),
            "value": round(found.value, 5),
        }

    def sample(self, kind: str) -> dict[str, Any]:
        """A random test image, or one of the model's mistakes (most confident first)."""
        if self.test_images is None:
            raise BadRequest(f"no test images: {self.test_note or 'none were loaded'}")
        if kind == "random":
            index = int(self._rng.integers(len(self.test_images)))
        elif kind == "mistake":
            mistakes = self.mistakes()
            if len(mistakes) == 0:
                raise BadRequest("the model makes no mistakes on these test images")
            # Mostly the confident mistakes, with some variety on every click.
            index = int(mistakes[self._rng.integers(min(len(mistakes), 50))])
        else:
            raise BadRequest("kind must be 'random' or 'mistake'")
        image = self.test_images[index]
        pixels = np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
        return {"pixels": _b64(pixels), "label": int(self.test_labels[index]), "index": index}

    def mistakes(self) -> np.ndarray:
        """The test images the model gets wrong, most confident first; computed once."""
        with self._mistakes_lock:
            if self._mistakes is None:
                # The model's lock is held a chunk at a time: a page update waits for one
                # chunk, not for the whole pass (which the server starts at once).
                probabilities = []
                for start in range(0, len(self.test_images), MISTAKES_CHUNK):
                    with self._lock:
                        chunk = self.test_images[start : start + MISTAKES_CHUNK]
                        probabilities.append(predict_probabilities(self.model, chunk))
                ranked = rank_mistakes(np.concatenate(probabilities), self.test_labels)
                self._mistakes = ranked.index
            return self._mistakes

    # -- input -------------------------------------------------------------------------
    def pixel_count(self) -> int:
        return int(np.prod(self.shape))

    def pixels(self, payload: Any) -> np.ndarray:
        """``{"pixels": base64 of C*H*W bytes}`` (channel-major, 0..255) -> (C, H, W) in [0, 1]."""
        if not isinstance(payload, dict) or not isinstance(payload.get("pixels"), str):
            raise BadRequest('expected a JSON object with "pixels": base64 of C*H*W bytes')
        try:
            raw = base64.b64decode(payload["pixels"], validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("pixels: not valid base64") from None
        expected = int(np.prod(self.shape))
        if len(raw) != expected:
            c, h, w = self.shape
            raise BadRequest(
                f"image data: expected {expected} bytes ({c} x {h} x {w}), got {len(raw)}"
            )
        image = np.frombuffer(raw, np.uint8).reshape(self.shape)
        return image.astype(self.model.dtype) * self.model.dtype.type(1 / 255)
