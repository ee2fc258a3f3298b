"""Where the app's work runs: the model host, compute calls (the GPU boundary and its emulation),
the tuning line and right of way, runs with their stops, and the private folder for files."""
