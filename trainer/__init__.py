"""trainer: datasets, training, evaluation and export of LaneGuard's models.

The only package that imports torch and ultralytics, and only inside the functions that train or
export, so `laneguard eval ...` runs with onnxruntime alone.
"""
