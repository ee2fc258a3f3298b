"""What the page says: labels (`strings`), messages, errors and toasts (`messages`), in English and
Korean. The ready tasks' own Korean words live with the tasks in assets/."""
