"""Data in and out: images, videos, the readers that shard them, tables, prompts, preference pairs, generated
samples, the bundled digits, and the wire format of `visreward serve`."""
