"""Local LoRA training (PROTOCOL.md, ``train``): dataset, buckets, the training loop, kohya output."""
