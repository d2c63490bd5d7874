"""What a trained model does to people, measured after training: fairness per class and per
sensitive group (`fairness`, on Fairlearn) and membership inference (`membership`).

Pure numpy / scikit-learn / Fairlearn on arrays of labels, predictions, losses and logits; the
engine computes those arrays (dptune.engine.evaluate). Everything here reads the validation
rows, which ε does not protect (they drive pruning and the choice of the best trial), and the
membership attacks also read the training rows' losses: the numbers are shown to the data
owner, not released under the guarantee.
"""
