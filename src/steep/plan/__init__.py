"""``steep plan``: memory per device, FLOPs and time of a run, worked out before any work.

Torch-free and low in the layers (config and below), so the CLI, the studio's forms and
``steep launch`` answer at once, and ``steep train`` asks the same arithmetic before it
loads the weights. ``devices`` is the one table of accelerators (memory and bf16 peak).
"""
