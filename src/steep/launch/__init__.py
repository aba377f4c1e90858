"""Starting ``steep train`` on many GPUs: the command builder, torchrun and Slurm.

Everything here returns argv lists or script text; nothing starts a process, so tests can
check it without a GPU or a cluster.
"""
