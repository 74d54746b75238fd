"""checkout_node: the lane computer. Sees items pass, compares with scans, raises alerts.

Runs on onnxruntime, OpenCV and numpy alone: it never imports torch or ultralytics.
"""
