"""Ray Tune: search spaces, the trainable, the sweep driver (Ray lives here and in train/ddp.py)."""
