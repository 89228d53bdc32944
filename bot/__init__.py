"""The Discord radio: stations, player, persistence and the Discord glue (see DESIGN.md)."""
