"""Dataset assembly: frames + smoothed poses -> per-session WebDataset shards in object storage.

assembler.consumer.Assembler(settings, shard_size=32, resolution=256).run(stop_event=None, idle_exit=None)
Assembler(settings, representation="parts")  # part maps (BodyPix) instead of stick figures

The format it writes, and reading it back, is the dataset package. Nothing is imported here, so
`booth` loads the command (assembler.cli) without the consumer and its metrics.
"""
