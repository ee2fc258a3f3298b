"""Biomed-DPT Studio: `python app.py` opens the clinician app in a browser (`--help` for flags)."""
import logging

from demo.layout import create_app, launch_options

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
demo, args = create_app()

if __name__ == "__main__":
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, **launch_options())
