"""The training loop (no Ray here except ``ddp.py``)."""
