"""What the page says: labels (`strings`), messages and errors (`messages`), Korean task words."""
