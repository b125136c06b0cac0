"""The one scheduler: periodic jobs under an exactly-once lock (`hikeshi scheduler`)."""
