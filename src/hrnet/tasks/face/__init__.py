"""Facial landmarks (HRNetV2, the paper's face application): WFLW, 300W, COFW and AFLW data, training, NME."""
