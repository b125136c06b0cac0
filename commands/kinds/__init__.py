"""One module per command: each holds one CommandType subclass (commands.command_type) with
everything about that command. commands.catalog lists them; importing a module registers nothing."""
