"""Result parsers, one module per result kind, called by the inventory commands (commands.kinds)."""
