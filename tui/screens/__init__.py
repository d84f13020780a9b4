"""The TUI's screens, one module each; tui.modes lists them."""
