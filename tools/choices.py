"""The names the commands offer as choices, spelled out once so `booth --help` imports nothing
heavy: vision.partsmap.KINDS (what a sample's generator input is drawn as) and
dataset.manifest.CONDITIONINGS (what the generator reads). tests/test_cli.py checks they match."""

REPRESENTATIONS = ("pose", "parts", "pose+parts")
CONDITIONINGS = ("pose", "warp", "warp-reliable")
