"""The Textual app: a thin client of terminal_sim's service API."""
