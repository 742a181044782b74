"""Measuring detection accuracy: WIDER FACE ground truth, the official protocol, predictions and PR curves."""
