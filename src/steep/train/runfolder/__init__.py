"""A run's folder: creating it, one writer at a time, its status, what a kill left, a resume
on changed data, and a failed write said in one line."""
