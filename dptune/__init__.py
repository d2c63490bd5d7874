"""dptune: tune differentially private SGD for TensorFlow / Keras 3 models."""

__version__ = "0.1.0"
