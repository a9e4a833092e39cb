"""Ray Tune and Ray Train: the sweep driver, the study, the trainables (one-worker and DDP) and their shared seed loop."""
