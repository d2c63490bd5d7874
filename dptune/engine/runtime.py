"""What TensorFlow's runtime says and does for the layers above it: the device, memory errors,
GPU memory growth for several workers, and freeing a finished trial's graph state."""

from __future__ import annotations

import keras
import tensorflow as tf


def device_name() -> str:
    """'GPU: <name>' when TensorFlow sees a GPU (it then places training there), else 'CPU'."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "CPU"
    details = tf.config.experimental.get_device_details(gpus[0])
    return f"GPU: {details.get('device_name', gpus[0].name)}"


def is_out_of_memory(error: BaseException) -> bool:
    """True for TensorFlow's ResourceExhaustedError, Python's MemoryError or an OOM message."""
    if isinstance(error, (tf.errors.ResourceExhaustedError, MemoryError)):
        return True
    return "out of memory" in str(error).lower()


def share_gpus_between_processes() -> None:
    """Let several worker processes share one GPU: allocate GPU memory as needed."""
    try:
        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
    except (RuntimeError, ValueError):
        pass  # already initialised: nothing to do


def release_models() -> None:
    """Free the finished trial's Keras graph state, so a long-running worker does not grow."""
    keras.backend.clear_session()
