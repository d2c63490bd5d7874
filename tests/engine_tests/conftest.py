"""The two ways the layerwise path computes a Conv2D's per-example gradients on a CPU: dptune's
compiled kernel (dptune.engine.native_ops) and TensorFlow's own ops (where no compiler is)."""

import pytest

from dptune.engine import layer_taps, native_ops


@pytest.fixture(params=["compiled kernel", "tensorflow ops"])
def conv_kernel(request, monkeypatch):
    """Runs a test once with the compiled Conv2D kernel (skipped, saying why, where it cannot be
    built) and once with TensorFlow's ops only."""
    if request.param == "compiled kernel":
        if native_ops.per_example_conv_kernel_grads() is None:
            pytest.skip(f"dptune's compiled kernel is unavailable: {native_ops.unavailable_reason()}")
    else:
        monkeypatch.setattr(layer_taps, "per_example_conv_kernel_grads", lambda: None)
    return request.param
