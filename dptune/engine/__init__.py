"""Engine: the only TensorFlow importer. Models and their per-example safety checks, per-example
gradients, Poisson sampling and the DP-SGD trainer."""
