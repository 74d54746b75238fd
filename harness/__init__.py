"""Every evaluation, benchmark and the demo: real parts of the product run together.

It sits above every layer (nothing in the product imports it), so the lane and the store
server carry no code that reaches for the simulator or the trainer.
"""
